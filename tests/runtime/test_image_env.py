"""``image_runtime_env``: ImageSpec → Ray runtime_env fragment, or an ImageBuildError naming the step."""

from __future__ import annotations

import importlib.metadata
import sys

import pytest

from beamray.adapters.image import Image
from beamray.exceptions import ImageBuildError
from beamray.runtime import image as runtime_image
from beamray.runtime.image import image_runtime_env, requirement_satisfied, unsatisfied_requirements
from beamray.specs import ImageSpec

WHAT = "Function app:handler"
RUNNING = f"{sys.version_info.major}.{sys.version_info.minor}"
MISSING = "definitely-not-installed-pkg==1.0"
NEEDS_NODES = ("install it on the nodes or set BEAMRAY_CONTAINER_RUNTIME=1 on a cluster with podman and use "
               "base_image (an image that already contains it)")


@pytest.fixture(autouse=True)
def no_container_runtime(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BEAMRAY_CONTAINER_RUNTIME", raising=False)


def error_of(spec: ImageSpec, **kwargs) -> str:
    with pytest.raises(ImageBuildError) as caught:
        image_runtime_env(spec, WHAT, **kwargs)
    return str(caught.value)


# -- packages ---------------------------------------------------------------------------------------------

def test_default_image_needs_nothing():
    assert image_runtime_env(ImageSpec(), WHAT) == {}


def test_satisfied_packages_produce_no_pip_entry():
    spec = ImageSpec(python_packages=("pytest", "packaging>=20", "click"), build_steps=(("pip", "Click>=1"),))
    assert image_runtime_env(spec, WHAT) == {}


def test_an_uninstalled_package_goes_to_pip():
    spec = ImageSpec(python_packages=("click", MISSING))
    assert image_runtime_env(spec, WHAT) == {"pip": [MISSING]}


def test_a_version_mismatch_goes_to_pip():
    assert image_runtime_env(ImageSpec(python_packages=("click<1",)), WHAT) == {"pip": ["click<1"]}


def test_add_python_packages_steps_are_checked_too():
    spec = Image().add_python_packages(["click", MISSING]).to_spec()
    assert image_runtime_env(spec, WHAT) == {"pip": [MISSING]}


def test_pip_options_ride_along_only_when_something_is_installed():
    assert unsatisfied_requirements(["--extra-index-url https://x.org/simple", "click"]) == []
    assert unsatisfied_requirements(["--extra-index-url https://x.org/simple", "click", MISSING]) == [
        "--extra-index-url https://x.org/simple", MISSING]


def test_requirement_and_editable_lines_always_go_to_pip():
    assert unsatisfied_requirements(["-r other.txt"]) == ["-r other.txt"]
    assert unsatisfied_requirements(["-e ./pkg", "click"]) == ["-e ./pkg"]


def test_unparseable_requirements_go_to_pip():
    assert unsatisfied_requirements(["git+https://github.com/org/repo.git#egg=repo"]) == [
        "git+https://github.com/org/repo.git#egg=repo"]


def test_inline_comments_squashed_by_the_sdk_are_ignored():
    assert unsatisfied_requirements(["click#the-cli-library"]) == []


def test_a_marker_that_does_not_apply_needs_nothing():
    assert requirement_satisfied(f'{MISSING}; python_version < "3"')
    assert not requirement_satisfied(f'{MISSING}; python_version >= "3"')


def test_names_are_matched_after_normalisation():
    version = importlib.metadata.version("packaging")
    assert requirement_satisfied(f"Packaging=={version}")


def test_an_extra_with_a_missing_dependency_is_unsatisfied(monkeypatch: pytest.MonkeyPatch):
    real_requires = importlib.metadata.requires

    def requires(name: str):
        if name == "click":
            return ['colorama; platform_system == "Windows"', f'{MISSING}; extra == "fancy"']
        return real_requires(name)

    monkeypatch.setattr(importlib.metadata, "requires", requires)
    assert requirement_satisfied("click")
    assert not requirement_satisfied("click[fancy]")
    assert requirement_satisfied("click[other]")


# -- env vars ------------------------------------------------------------------------------------------------

def test_env_vars_map_to_runtime_env_env_vars():
    spec = Image(env_vars={"HF_HOME": "/models"}).with_envs("A=1").to_spec()
    assert image_runtime_env(spec, WHAT) == {"env_vars": {"HF_HOME": "/models", "A": "1"}}


def test_env_vars_and_pip_combine():
    spec = ImageSpec(python_packages=(MISSING,), env_vars=(("A", "1"),))
    assert image_runtime_env(spec, WHAT) == {"pip": [MISSING], "env_vars": {"A": "1"}}


# -- python version ------------------------------------------------------------------------------------------

def test_python3_and_the_running_version_are_accepted():
    assert image_runtime_env(ImageSpec(python_version="python3"), WHAT) == {}
    assert image_runtime_env(ImageSpec(python_version=f"python{RUNNING}"), WHAT) == {}
    assert image_runtime_env(ImageSpec(python_version=f"micromamba{RUNNING}"), WHAT) == {}


def test_a_different_python_version_raises_naming_the_running_version():
    other = "3.8" if RUNNING != "3.8" else "3.9"
    message = error_of(ImageSpec(python_version=f"python{other}"))
    assert message == (
        f"{WHAT}: Image(python_version='python{other}') asks for Python {other}, but this Ray cluster runs Python "
        f"{RUNNING}; use python_version='python3' (whatever Python 3 the cluster runs) or run the cluster on "
        f"Python {other}"
    )


def test_an_unknown_python_version_raises():
    assert "Image(python_version='ruby3') is not a Python version" in error_of(ImageSpec(python_version="ruby3"))


# -- steps that need a container ---------------------------------------------------------------------------

def test_shell_commands_raise_naming_the_step():
    spec = Image().add_commands(["apt-get install ffmpeg"]).to_spec()
    assert error_of(spec) == (
        f"{WHAT}: Image.add_commands(['apt-get install ffmpeg']) needs a container build, which this Ray cluster "
        f"does not support; {NEEDS_NODES}"
    )


def test_constructor_commands_raise_too():
    assert "Image.add_commands(['echo hi'])" in error_of(Image(commands=["echo hi"]).to_spec())


def test_apt_install_raises_naming_the_packages():
    message = error_of(Image().apt_install("ffmpeg", "libjpeg-dev").to_spec())
    assert message.startswith(f"{WHAT}: Image.apt_install('ffmpeg', 'libjpeg-dev') needs a container build")


def test_micromamba_packages_and_channels_raise():
    assert "Image.add_micromamba_packages(['pandas'])" in error_of(
        ImageSpec(build_steps=(("micromamba", "pandas"),)))
    assert "Image.add_micromamba_packages(channels=['conda-forge'])" in error_of(
        ImageSpec(build_steps=(("micromamba", "-c conda-forge"),)))


def test_micromamba_alone_is_honoured():
    assert image_runtime_env(Image(python_version=f"python{RUNNING}").micromamba().to_spec(), WHAT) == {}


def test_the_first_unhonourable_step_is_named():
    spec = ImageSpec(build_steps=(("pip", "click"), ("apt", "ffmpeg"), ("shell", "ls")))
    assert "Image.apt_install('ffmpeg')" in error_of(spec)


def test_copied_local_dirs_raise_and_mounted_ones_do_not():
    copied = ImageSpec(build_steps=(("local_dir", "data -> /app/data (copy)"),))
    assert error_of(copied).startswith(
        f"{WHAT}: Image.add_local_dir('data', '/app/data', copy=True) needs a container build")
    assert "use copy=False" in error_of(copied)
    mounted = ImageSpec(build_steps=(("local_dir", "data -> /mnt/code/data"), ("local_file", "w -> /mnt/code/w"),
                                     ("local_path", "*"), ("docker", "enabled")))
    assert image_runtime_env(mounted, WHAT) == {}


def test_base_image_without_the_opt_in_raises_naming_the_step():
    message = error_of(ImageSpec(base_image="python:3.11-slim"))
    assert message == (
        f"{WHAT}: Image(base_image='python:3.11-slim') needs a container runtime, which this Ray cluster does not "
        "support; install what the image provides on the nodes and drop base_image, or set "
        "BEAMRAY_CONTAINER_RUNTIME=1 on a cluster with podman"
    )


def test_base_image_with_the_opt_in_becomes_image_uri(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("BEAMRAY_CONTAINER_RUNTIME", "1")
    spec = ImageSpec(base_image="docker.io/org/app:1", env_vars=(("A", "1"),))
    assert image_runtime_env(spec, WHAT) == {"image_uri": "docker.io/org/app:1", "env_vars": {"A": "1"}}


def test_container_runtime_argument_overrides_the_variable(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("BEAMRAY_CONTAINER_RUNTIME", "1")
    assert "needs a container runtime" in error_of(ImageSpec(base_image="x"), container_runtime=False)
    monkeypatch.delenv("BEAMRAY_CONTAINER_RUNTIME")
    assert image_runtime_env(ImageSpec(base_image="x"), WHAT, container_runtime=True) == {"image_uri": "x"}


def test_packages_on_top_of_a_base_image_raise():
    spec = ImageSpec(base_image="x", python_packages=("click",))
    assert error_of(spec, container_runtime=True).startswith(
        f"{WHAT}: Image(python_packages=['click']) cannot be installed on top of base_image 'x'")
    spec = ImageSpec(base_image="x", build_steps=(("pip", "click"),))
    assert "Image.add_python_packages(['click'])" in error_of(spec, container_runtime=True)


def test_a_dockerfile_always_raises_naming_from_dockerfile():
    spec = ImageSpec(dockerfile="./Dockerfile")
    for enabled in (False, True):
        assert error_of(spec, container_runtime=enabled).startswith(
            f"{WHAT}: Image.from_dockerfile('./Dockerfile') needs a Dockerfile build, and beamray has no image builder")


def test_a_beam_image_id_raises_naming_from_id():
    assert error_of(Image.from_id("img-123").to_spec()).startswith(f"{WHAT}: Image.from_id('img-123') names an image")


def test_an_unknown_step_kind_raises():
    assert "image build step 'teleport'" in error_of(ImageSpec(build_steps=(("teleport", "x"),)))


def test_the_module_imports_no_ray():
    source = open(runtime_image.__file__).read()
    assert "import ray" not in source and "from ray" not in source
