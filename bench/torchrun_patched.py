"""torchrun from Debian's python3-torch, with one fix so it runs on Python 3.11.

Std.from_str maps "0".."3" to a Std member by iterating the IntFlag; since Python 3.11 that iteration
skips NONE (0), so every launch (even without --redirects/--tee) crashes in to_map(). The fix builds
the member with Std(int(v)). Nothing else is changed: the benchmark compares npurun with torchrun as
shipped, minus the crash.
"""
import re
import sys

from torch.distributed.elastic.multiprocessing import api


def from_str(vm):
    if re.match(api._VALUE_REGEX, vm):
        return api.Std(int(vm))
    if re.match(api._MAPPING_REGEX, vm):
        return {int(i): api.Std(int(v)) for i, v in (m.split(":") for m in vm.split(","))}
    raise ValueError("%s does not match: <%s> or <%s>" % (vm, api._VALUE_REGEX, api._MAPPING_REGEX))


api.Std.from_str = staticmethod(from_str)

from torch.distributed.run import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
