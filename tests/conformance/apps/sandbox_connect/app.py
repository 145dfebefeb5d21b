# A second program reaching a running sandbox by its id, then ending it.
import sys

from beam import Sandbox

same = Sandbox().connect(sys.argv[1])
print(same.fs.read_text("/workspace/a.txt"))
p = same.process.exec("cat", "a.txt")
p.wait()
print(p.stdout.read())
same.terminate()
print(same.poll())
