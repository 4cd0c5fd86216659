"""Compiles every Python file of the project (no .pyc written) and checks the grammar and the
annotations against Python 3.7, the oldest Python on the hosts (EulerOS, Ubuntu 18.04 with 3.7).

Usage: python3 scripts/check-python.py [--list]. Files: tracked or new (not ignored) *.py under
src/, templates/, test/, bench/ and scripts/. bench/ and scripts/ run only here, so they are only compiled.
"""
import ast
import os
import subprocess
import sys

ROOTS = ("src", "templates", "test", "bench", "scripts")
HOST_SIDE = ("src/", "templates/", "test/")  # may run on a host: must parse as Python 3.7
OLDEST = (3, 7)
# Builtins subscripted in an annotation that Python evaluates (no `from __future__ import
# annotations`) raise TypeError before 3.9 (`list[int]`), as `X | Y` does before 3.10.
GENERIC_BUILTINS = {"list", "dict", "tuple", "set", "frozenset", "type"}


def python_files():
    git = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z", "--", *ROOTS],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )
    if git.returncode == 0:
        paths = git.stdout.decode().split("\0")
    else:  # not a git checkout (an unpacked tarball): every .py under the roots
        paths = []
        for root in ROOTS:
            for d, subdirs, names in os.walk(root):
                subdirs[:] = [s for s in subdirs if s not in ("__pycache__", "node_modules")]
                paths += [os.path.join(d, f) for f in names]
    return sorted({p for p in paths if p.endswith(".py") and os.path.isfile(p)})


def evaluated_annotations(tree):
    """Annotations Python evaluates at definition time: parameters, returns, and module/class
    variables (a function's local variable annotations are never evaluated)."""
    def walk(body, in_function):
        for node in body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                a = node.args
                for arg in a.posonlyargs + a.args + a.kwonlyargs + [a.vararg, a.kwarg]:
                    if arg is not None and arg.annotation is not None:
                        yield arg.annotation
                if node.returns is not None:
                    yield node.returns
                yield from walk(node.body, True)
            elif isinstance(node, ast.ClassDef):
                yield from walk(node.body, in_function)
            elif isinstance(node, ast.AnnAssign) and not in_function:
                yield node.annotation
            else:
                for field in ("body", "orelse", "finalbody", "handlers"):
                    inner = getattr(node, field, None)
                    if isinstance(inner, list):
                        yield from walk([n for n in inner if isinstance(n, ast.AST)], in_function)
    yield from walk(tree.body, False)


def annotation_problems(tree):
    future = any(
        isinstance(n, ast.ImportFrom) and n.module == "__future__" and any(a.name == "annotations" for a in n.names)
        for n in tree.body
    )
    if future:
        return
    for annotation in evaluated_annotations(tree):
        for node in ast.walk(annotation):
            if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and node.value.id in GENERIC_BUILTINS:
                yield node.lineno, "`%s[...]` in an annotation needs Python 3.9 (use typing.%s or `from __future__ import annotations`)" % (node.value.id, node.value.id.capitalize())
            elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
                yield node.lineno, "`X | Y` in an annotation needs Python 3.10 (use typing.Optional/Union or `from __future__ import annotations`)"


def check(path):
    with open(path, "rb") as f:
        source = f.read()
    try:
        compile(source, path, "exec", dont_inherit=True)
    except SyntaxError as e:
        return ["%s:%s: %s" % (path, e.lineno, e.msg)]
    if not path.startswith(HOST_SIDE):
        return []
    try:
        tree = ast.parse(source, path, feature_version=OLDEST)
    except SyntaxError as e:
        return ["%s:%s: not Python 3.7: %s" % (path, e.lineno, e.msg)]
    return ["%s:%s: %s" % (path, line, msg) for line, msg in annotation_problems(tree)]


def main():
    files = python_files()
    if "--list" in sys.argv:
        print("\n".join(files))
    problems = [p for f in files for p in check(f)]
    for p in problems:
        print("python: " + p, file=sys.stderr)
    print("python: %d file(s) compiled, %d host-side checked against Python 3.7, %d problem(s)"
          % (len(files), sum(f.startswith(HOST_SIDE) for f in files), len(problems)))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
