"""Prints N numbered lines as fast as it can, some written in fragments, the last one without newline."""
import os, sys
n = int(sys.argv[1])
rank = os.environ.get("NPURUN_RANK", "?")
out = sys.stdout
for i in range(n - 1):
    line = "rank %s line %d payload %s\n" % (rank, i, "x" * (i % 50))
    if i % 1000 == 0:
        # A line split across writes (and flushes): must still arrive as one line.
        half = len(line) // 2
        out.write(line[:half]); out.flush(); out.write(line[half:])
    else:
        out.write(line)
out.write("rank %s line %d last-no-newline" % (rank, n - 1))
out.flush()
