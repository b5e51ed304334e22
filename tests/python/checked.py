"""Run a test script with its checks made explicit and counted.

usage: checked.py SCRIPT [ARGS...]

Every `assert` statement of SCRIPT is rewritten (on its syntax tree) into
an explicit check that raises AssertionError, so running with -O or
PYTHONOPTIMIZE cannot remove it, and that counts itself. At exit the number
of checks that ran, and how many `assert` statements the script has, go to
standard error as `OXEYE_CHECKS ran=<n> statements=<m> unrun=<lines>`:
the Rust side requires every statement to have run at least once.
"""
import ast
import atexit
import sys

ran = 0
seen = set()


def _oxeye_check(line, ok, message=None):
    global ran
    ran += 1
    seen.add(line)
    if not ok:
        raise AssertionError(message) if message is not None else AssertionError()


class Explicit(ast.NodeTransformer):
    def __init__(self):
        self.lines = []

    def visit_Assert(self, node):
        self.lines.append(node.lineno)
        args = [ast.Constant(node.lineno), node.test] + ([node.msg] if node.msg is not None else [])
        call = ast.Call(func=ast.Name(id="_oxeye_check", ctx=ast.Load()), args=args, keywords=[])
        return ast.copy_location(ast.Expr(value=call), node)


path = sys.argv[1]
with open(path, encoding="utf-8") as f:
    tree = ast.parse(f.read(), filename=path)
explicit = Explicit()
tree = ast.fix_missing_locations(explicit.visit(tree))


def report():
    unrun = ",".join(str(line) for line in explicit.lines if line not in seen) or "-"
    print(f"OXEYE_CHECKS ran={ran} statements={len(explicit.lines)} unrun={unrun}", file=sys.stderr)


atexit.register(report)
sys.argv = sys.argv[1:]
code = compile(tree, path, "exec")
exec(code, {"__name__": "__main__", "__file__": path, "_oxeye_check": _oxeye_check})
