# The example of issue 14 (Beam docs › Sandbox › Overview, Process Management, File System Operations,
# Networking). Port 18080 instead of 8080: the sandbox shares the node's network with other projects.
from beam import Image, Sandbox

sb = Sandbox(cpu=0.5, memory="512Mi", image=Image().add_python_packages(["numpy"]), keep_warm_seconds=300).create()
p = sb.process.run_code("import numpy; print(numpy.arange(3).sum())")
print(p.wait(), p.stdout.read().strip())                # 0 3
sb.fs.write_text("/workspace/a.txt", "hi")
print(sb.fs.read_text("/workspace/a.txt"))              # hi
server = sb.process.exec("python", "-m", "http.server", "18080")
url = sb.expose_port(18080)                             # GET url → 200 from inside the sandbox
print(sb.status())                                      # RUNNING
print(sb.sandbox_id())                                  # the test connects to it from another process
print(url)
