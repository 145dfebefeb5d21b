"""Beam's ``Image``: constructor, every builder method, messages and ordering as in the SDK (no Ray needed)."""

from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path

import pytest

from beamray.adapters import image as image_module
from beamray.adapters.image import APT_INSTALL_COMMAND, BuildStep, Image, ImageBuildResult
from beamray.adapters.types import PythonVersion
from beamray.specs import ImageSpec

REQUIREMENTS_MISSING = (
    "Could not find valid requirements.txt file at {}. Libraries must be specified as a list of valid package "
    "names or a path to a requirements.txt file."
)


@pytest.fixture
def in_tmp_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture(autouse=True)
def fresh_build_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(image_module, "_build_cache", {})
    monkeypatch.setattr(image_module, "_built_images", {})
    monkeypatch.delenv("CONTAINER_ID", raising=False)
    monkeypatch.delenv("BEAMRAY_CONTAINER_RUNTIME", raising=False)


# -- the SDK's surface ----------------------------------------------------------------------------------

SDK_METHODS = {  # from shared/spec/beam-api-signatures.json, key "Image"
    "from_dockerfile": ["path", "context_dir", "target", "build_args"],
    "sync_files": ["context_dir"],
    "from_registry": ["image_uri", "credentials"],
    "from_id": ["image_id"],
    "exists": [],
    "build": ["quiet"],
    "micromamba": [],
    "add_micromamba_packages": ["packages", "channels"],
    "add_commands": ["commands"],
    "add_python_packages": ["packages"],
    "add_local_path": ["pattern"],
    "add_local_dir": ["local_path", "remote_path", "copy"],
    "add_local_file": ["local_path", "remote_path", "copy"],
    "apt_install": ["packages"],
    "pip_install": ["packages"],
    "run_commands": ["commands"],
    "env": ["env_vars"],
    "add_python_version": ["python_version"],
    "with_envs": ["env_vars", "clear"],
    "validate_env_vars": ["env_vars"],
    "with_secrets": ["secrets"],
    "build_with_gpu": ["gpu"],
    "with_docker": [],
}


def test_constructor_has_the_sdk_parameters_in_order():
    params = list(inspect.signature(Image.__init__).parameters)[1:]
    assert params == ["python_version", "python_packages", "commands", "base_image", "base_image_creds",
                      "env_vars", "image_id"]
    assert inspect.signature(Image.__init__).parameters["python_version"].default == PythonVersion.Python3


@pytest.mark.parametrize("method, params", sorted(SDK_METHODS.items()))
def test_every_sdk_method_exists_with_the_sdk_parameter_names(method: str, params: list[str]):
    signature = inspect.signature(getattr(Image, method))
    names = [name for name in signature.parameters if name not in ("self", "cls")]
    assert names == params


def test_varargs_aliases_take_star_args():
    for method in ("apt_install", "pip_install", "run_commands"):
        (param,) = [p for p in inspect.signature(getattr(Image, method)).parameters.values() if p.name != "self"]
        assert param.kind is inspect.Parameter.VAR_POSITIONAL


def test_constructor_defaults_match_the_sdk():
    image = Image()
    assert image.python_version == PythonVersion.Python3
    assert image.python_packages == []
    assert image.commands == []
    assert image.build_steps == []
    assert image.base_image == ""
    assert image.base_image_creds == {}
    assert image.env_vars == []
    assert image.secrets == []
    assert image.image_id == ""


def test_constructor_defaults_are_not_shared_between_instances():
    first, second = Image(), Image()
    first.python_packages.append("numpy")
    first.commands.append("echo hi")
    assert second.python_packages == [] and second.commands == []
    commands = ["echo a"]
    image = Image(commands=commands)
    commands.append("echo b")
    assert image.commands == ["echo a"]


# -- python packages ---------------------------------------------------------------------------------

def test_constructor_sanitizes_packages_like_the_sdk():
    image = Image(python_packages=["numpy == 2.0", "# a comment", "--extra-index-url https://x.org/simple",
                                   "-e ./pkg", "pandas"])
    assert image.python_packages == ["numpy==2.0", "--extra-index-url https://x.org/simple", "-e ./pkg", "pandas"]


def test_constructor_reads_a_requirements_file(tmp_path: Path):
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("numpy == 2.0\n\n# pinned\n--index-url https://x.org/simple\ntorch\n")
    image = Image(python_packages=str(requirements))
    assert image.python_packages == ["numpy==2.0", "--index-url https://x.org/simple", "torch"]


def test_constructor_raises_file_not_found_for_a_missing_requirements_file(tmp_path: Path):
    missing = str(tmp_path / "nope.txt")
    with pytest.raises(FileNotFoundError) as caught:
        Image(python_packages=missing)
    assert str(caught.value) == REQUIREMENTS_MISSING.format(missing)


def test_add_python_packages_adds_pip_steps_in_order():
    image = Image().add_python_packages(["numpy", "pandas==2.2.2"])
    assert image.build_steps == [BuildStep("numpy", "pip"), BuildStep("pandas==2.2.2", "pip")]


def test_add_python_packages_reads_and_sanitizes_a_requirements_file(tmp_path: Path):
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("numpy >= 1\n# skip\n--pre\n")
    image = Image().add_python_packages(str(requirements))
    assert [(step.type, step.command) for step in image.build_steps] == [("pip", "numpy>=1"), ("pip", "--pre")]


def test_add_python_packages_rejects_a_missing_requirements_file_with_value_error(tmp_path: Path):
    missing = str(tmp_path / "requirements.txt")
    with pytest.raises(ValueError) as caught:
        Image().add_python_packages(missing)
    assert str(caught.value) == REQUIREMENTS_MISSING.format(missing)


def test_pip_install_is_an_alias_of_add_python_packages():
    assert Image().pip_install("numpy", "torch").build_steps == Image().add_python_packages(
        ["numpy", "torch"]).build_steps


# -- commands, apt, micromamba ------------------------------------------------------------------------

def test_add_commands_adds_shell_steps_and_run_commands_is_its_alias():
    image = Image().add_commands(["apt-get update", "echo hi"]).run_commands("ls", "pwd")
    assert image.build_steps == [BuildStep("apt-get update", "shell"), BuildStep("echo hi", "shell"),
                                 BuildStep("ls", "shell"), BuildStep("pwd", "shell")]


def test_apt_install_records_the_packages_of_one_call_as_one_step():
    image = Image().apt_install("ffmpeg", "libjpeg-dev")
    assert image.build_steps == [BuildStep("ffmpeg libjpeg-dev", "apt")]
    assert Image().apt_install().build_steps == []
    assert APT_INSTALL_COMMAND.format("ffmpeg") == (
        "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "
        "ffmpeg && rm -rf /var/lib/apt/lists/*"
    )


def test_micromamba_turns_python3_into_micromamba311():
    assert Image().micromamba().python_version == "micromamba3.11"


def test_micromamba_keeps_an_explicit_python_version():
    assert Image(python_version="python3.12").micromamba().python_version == "micromamba3.12"
    assert Image(python_version=PythonVersion.Python39).micromamba().python_version == "micromamba3.9"


def test_add_micromamba_packages_adds_packages_then_channels():
    image = Image().micromamba().add_micromamba_packages(["pandas", "numpy"], channels=["conda-forge"])
    assert image.build_steps == [BuildStep("pandas", "micromamba"), BuildStep("numpy", "micromamba"),
                                 BuildStep("-c conda-forge", "micromamba")]


def test_add_micromamba_packages_reads_a_requirements_file(tmp_path: Path):
    requirements = tmp_path / "conda.txt"
    requirements.write_text("pandas\n# no\nnumpy = 2\n")
    image = Image().micromamba().add_micromamba_packages(str(requirements))
    assert [step.command for step in image.build_steps] == ["pandas", "numpy=2"]


def test_add_micromamba_packages_requires_micromamba():
    with pytest.raises(ValueError) as caught:
        Image().add_micromamba_packages(["pandas"])
    assert str(caught.value) == "Micromamba must be enabled to use this method."


def test_add_python_version_overrides_the_version():
    assert Image().add_python_version("python3.12").python_version == "python3.12"
    assert Image().add_python_version(PythonVersion.Python310).to_spec().python_version == "python3.10"


# -- env vars ---------------------------------------------------------------------------------------------

def test_with_envs_accepts_a_string_a_list_and_a_dict():
    image = Image().with_envs("A=1").with_envs(["B=2", "C=x"]).with_envs({"D": "4"})
    assert image.env_vars == ["A=1", "B=2", "C=x", "D=4"]


def test_with_envs_clear_replaces_earlier_entries():
    assert Image(env_vars=["A=1"]).with_envs(["B=2"], clear=True).env_vars == ["B=2"]


def test_env_is_an_alias_of_with_envs():
    assert Image().env({"HF_HOME": "/models"}).env_vars == ["HF_HOME=/models"]


def test_constructor_env_vars_go_through_with_envs():
    assert Image(env_vars={"A": "1"}).env_vars == ["A=1"]
    assert Image(env_vars="A=1").env_vars == ["A=1"]
    with pytest.raises(ValueError, match="Environment variable must contain '=': A"):
        Image(env_vars="A")


def test_with_envs_rejects_entry_without_equals():
    with pytest.raises(ValueError) as caught:
        Image().with_envs(["HF_HOME"])
    assert str(caught.value) == "Environment variable must contain '=': HF_HOME"


def test_with_envs_rejects_empty_key():
    with pytest.raises(ValueError) as caught:
        Image().with_envs("=value")
    assert str(caught.value) == "Environment variable key cannot be empty: =value"


def test_with_envs_rejects_empty_value():
    with pytest.raises(ValueError) as caught:
        Image().with_envs({"KEY": ""})
    assert str(caught.value) == "Environment variable value cannot be empty: KEY="


def test_with_envs_rejects_multiple_equals():
    with pytest.raises(ValueError) as caught:
        Image().with_envs("A=b=c")
    assert str(caught.value) == "Environment variable cannot contain multiple '=' characters: A=b=c"


def test_with_envs_validates_everything_before_adding_anything():
    image = Image()
    with pytest.raises(ValueError):
        image.with_envs(["A=1", "broken"])
    assert image.env_vars == []


def test_validate_env_vars_is_public_and_returns_none():
    assert Image().validate_env_vars(["A=1"]) is None


# -- secrets, gpu, docker, local files ----------------------------------------------------------------

def test_with_secrets_build_with_gpu_and_with_docker_are_recorded():
    image = Image().with_secrets(["HF_TOKEN"]).with_secrets(["OTHER"]).build_with_gpu("T4").with_docker()
    assert image.secrets == ["HF_TOKEN", "OTHER"]
    assert image.gpu == "T4"
    assert image.docker_enabled is True
    assert image.to_spec().build_secrets == ("HF_TOKEN", "OTHER")
    assert ("docker", "enabled") in image.to_spec().build_steps


def test_add_local_path_maps_dot_to_everything():
    image = Image().add_local_path().add_local_path(".").add_local_path("*.py")
    assert image.include_files_patterns == ["*", "*", "*.py"]


def test_add_local_dir_mounts_under_mnt_code_by_default(in_tmp_cwd: Path):
    (in_tmp_cwd / "data" / "raw").mkdir(parents=True)
    image = Image().add_local_dir("data/raw").add_local_dir("data", "/app/data", copy=True)
    assert image.build_steps == [BuildStep("data/raw -> /mnt/code/data/raw", "local_dir"),
                                 BuildStep("data -> /app/data (copy)", "local_dir")]


def test_add_local_file_records_mount_or_copy(in_tmp_cwd: Path):
    (in_tmp_cwd / "weights.bin").write_bytes(b"x")
    image = Image().add_local_file("weights.bin").add_local_file("./weights.bin", "/w.bin", copy=True)
    assert image.build_steps == [BuildStep("weights.bin -> /mnt/code/weights.bin", "local_file"),
                                 BuildStep("weights.bin -> /w.bin (copy)", "local_file")]


def test_add_local_dir_rejects_a_path_outside_the_working_directory(in_tmp_cwd: Path):
    with pytest.raises(ValueError, match="Local path must be inside the current working directory"):
        Image().add_local_dir("..")


def test_add_local_dir_and_file_reject_missing_paths(in_tmp_cwd: Path):
    with pytest.raises(FileNotFoundError, match="Local directory not found: nope"):
        Image().add_local_dir("nope")
    with pytest.raises(FileNotFoundError, match="Local file not found: nope.txt"):
        Image().add_local_file("nope.txt")


def test_sync_files_locates_the_context_directory(in_tmp_cwd: Path):
    image = Image()
    assert image.sync_files() == str(in_tmp_cwd)
    with pytest.raises(FileNotFoundError):
        image.sync_files("missing-dir")


# -- chaining ---------------------------------------------------------------------------------------------

CHAINED_CALLS = [
    ("add_python_packages", (["numpy"],)), ("pip_install", ("numpy",)), ("add_commands", (["ls"],)),
    ("run_commands", ("ls",)), ("apt_install", ("ffmpeg",)), ("with_envs", ("A=1",)), ("env", ({"A": "1"},)),
    ("with_secrets", (["S"],)), ("build_with_gpu", ("T4",)), ("micromamba", ()), ("add_python_version",
    ("python3.11",)), ("add_local_path", ()), ("with_docker", ()),
]


@pytest.mark.parametrize("method, args", CHAINED_CALLS)
def test_builder_methods_return_the_same_image(method: str, args: tuple):
    image = Image()
    assert getattr(image, method)(*args) is image


def test_add_micromamba_packages_and_local_paths_chain(in_tmp_cwd: Path):
    (in_tmp_cwd / "d").mkdir()
    (in_tmp_cwd / "f").write_text("x")
    image = Image().micromamba()
    assert image.add_micromamba_packages(["numpy"]) is image
    assert image.add_local_dir("d") is image
    assert image.add_local_file("f") is image


# -- alternative constructors -------------------------------------------------------------------------

def test_from_registry_is_base_image_with_credentials():
    image = Image.from_registry("docker.io/org/app:1", credentials=["DOCKERHUB_USERNAME", "DOCKERHUB_PASSWORD"])
    assert image == Image(base_image="docker.io/org/app:1",
                          base_image_creds=["DOCKERHUB_USERNAME", "DOCKERHUB_PASSWORD"])
    assert image.to_spec().base_image == "docker.io/org/app:1"


def test_base_image_creds_accept_the_sdk_keys_as_list_or_dict():
    assert Image(base_image_creds=["GITHUB_USERNAME", "GITHUB_TOKEN"]).base_image_creds == [
        "GITHUB_USERNAME", "GITHUB_TOKEN"]
    assert Image(base_image_creds={"NGC_API_KEY": "NGC_API_KEY"}).base_image_creds == {"NGC_API_KEY": "NGC_API_KEY"}


def test_base_image_creds_reject_other_keys():
    with pytest.raises(ValueError) as caught:
        Image(base_image="x", base_image_creds=["MY_PASSWORD"])
    assert str(caught.value).startswith("Invalid base_image_creds key: 'MY_PASSWORD'. Allowed keys: AWS_ACCESS_KEY_ID")


def test_base_image_creds_reject_a_bare_string():
    with pytest.raises(TypeError, match="base_image_creds must be a list of secret names or a dict"):
        Image(base_image_creds="AWS_REGION")  # type: ignore[arg-type]


def test_from_dockerfile_reads_the_dockerfile_and_defaults_the_context(tmp_path: Path):
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text("FROM python:3.11-slim\n")
    image = Image.from_dockerfile(str(dockerfile), target="prod", build_args={"A": "1"})
    assert image.dockerfile == "FROM python:3.11-slim\n"
    assert image.build_ctx_object == str(tmp_path)
    assert image.dockerfile_target == "prod" and image.dockerfile_build_args == {"A": "1"}
    assert image.to_spec().dockerfile == str(dockerfile)
    assert Image.from_dockerfile(str(dockerfile)).add_python_packages(["numpy"]).build_steps == [
        BuildStep("numpy", "pip")]


def test_from_dockerfile_raises_for_a_missing_file(tmp_path: Path):
    with pytest.raises(FileNotFoundError):
        Image.from_dockerfile(str(tmp_path / "Dockerfile"))


def test_from_dockerfile_inside_a_container_returns_a_bare_image(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setenv("CONTAINER_ID", "function-abc")
    image = Image.from_dockerfile(str(tmp_path / "missing"))
    assert image.dockerfile == "" and image.to_spec() == Image().to_spec()


def test_build_rejects_from_dockerfile_with_a_base_image(tmp_path: Path):
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text("FROM scratch\n")
    image = Image.from_dockerfile(str(dockerfile))
    image.base_image = "docker.io/library/python:3.11"
    with pytest.raises(ValueError) as caught:
        image.build()
    assert str(caught.value) == "Cannot use from_dockerfile and provide a custom base image."


def test_from_id_of_an_unknown_image_records_an_image_id_step():
    image = Image.from_id("abc123")
    assert image.image_id == "abc123"
    assert image.to_spec().build_steps == (("image_id", "abc123"),)


def test_from_id_of_an_image_built_here_is_that_image():
    built = Image(python_packages=["click"]).with_envs("A=1")
    result = built.build(quiet=True)
    again = Image.from_id(result.image_id)
    assert again == built and again.env_vars == ["A=1"]
    assert again.to_spec() == built.to_spec()


# -- equality, spec ----------------------------------------------------------------------------------------

def test_eq_compares_only_version_packages_base_image_and_creds():
    assert Image(python_packages=["numpy"]).add_commands(["ls"]).with_envs("A=1") == Image(python_packages=["numpy"])
    assert Image(python_version="python3.11") != Image()
    assert Image(python_packages=["numpy"]) != Image()
    assert Image(base_image="python:3.11") != Image()
    assert Image(base_image="x", base_image_creds=["AWS_REGION"]) != Image(base_image="x")
    assert Image() != "python3"


def test_str_matches_the_sdk():
    assert str(Image(python_packages=["numpy"])) == (
        "Python Version: python3, Python Packages: ['numpy'], Base Image: , Base Image Credentials: {}")


def test_to_spec_keeps_the_sdk_run_order():
    image = Image(python_packages=["numpy"], commands=["echo constructor"])
    image.add_commands(["echo first"]).add_python_packages(["torch"]).apt_install("ffmpeg")
    image.micromamba().add_micromamba_packages(["pandas"], channels=["conda-forge"])
    spec = image.to_spec()
    assert spec.python_packages == ("numpy",)  # installed before every command
    assert spec.build_steps == (
        ("shell", "echo constructor"), ("shell", "echo first"), ("pip", "torch"), ("apt", "ffmpeg"),
        ("micromamba", "pandas"), ("micromamba", "-c conda-forge"),
    )
    assert spec.python_version == "micromamba3.11"


def test_to_spec_fills_every_field():
    spec = Image(python_version=PythonVersion.Python311, base_image="python:3.11",
                 env_vars={"A": "1", "B": "2"}).with_secrets(["HF_TOKEN"]).to_spec()
    assert spec == ImageSpec(python_version="python3.11", python_packages=(), build_steps=(),
                             base_image="python:3.11", dockerfile=None, env_vars=(("A", "1"), ("B", "2")),
                             build_secrets=("HF_TOKEN",))
    assert Image().to_spec() == ImageSpec()
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.base_image = "other"  # type: ignore[misc]


# -- build / exists --------------------------------------------------------------------------------------

def test_build_succeeds_for_an_image_this_cluster_can_run(capsys: pytest.CaptureFixture[str]):
    result = Image(python_packages=["click"]).build()
    assert isinstance(result, ImageBuildResult)
    assert result.success and result.error == "" and len(result.image_id) == 16
    assert result.python_version.startswith("python3.")
    assert "=> Building image" in capsys.readouterr().out


def test_build_image_id_is_a_stable_hash_of_the_spec():
    first = Image(python_packages=["click"]).build(quiet=True).image_id
    assert Image(python_packages=["click"]).build(quiet=True).image_id == first
    assert Image(python_packages=["click"]).with_envs("A=1").build(quiet=True).image_id != first


def test_build_quiet_prints_nothing_and_a_second_build_uses_the_cache(capsys: pytest.CaptureFixture[str]):
    image = Image()
    first = image.build(quiet=True)
    assert capsys.readouterr().out == ""
    assert image.build() == first
    assert "=> Using cached image" in capsys.readouterr().out


def test_build_reports_a_step_the_cluster_cannot_honour():
    result = Image().add_commands(["apt-get install ffmpeg"]).build(quiet=True)
    assert result.success is False
    assert "Image.add_commands(['apt-get install ffmpeg']) needs a container build" in result.error


def test_exists_returns_a_flag_and_the_result():
    ok, result = Image().exists()
    assert ok is True and result.success
    ok, result = Image(base_image="python:3.11").exists()
    assert ok is False and "base_image" in result.error


def test_build_result_is_a_dataclass_with_the_sdk_fields():
    assert [field.name for field in dataclasses.fields(ImageBuildResult)] == [
        "success", "image_id", "python_version", "error"]
    assert ImageBuildResult() == ImageBuildResult(False, "", "", "")

