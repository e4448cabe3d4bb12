# Names MicroPython has and CPython lacks, provided once for every board module.
#
# const(): on MicroPython, `X = const(1)` is folded by the compiler (and `_X`
# takes no RAM as a global); the compiler recognises the name `const` itself, so
# `from firmware.core.compat import const` keeps that. On CPython (simulator,
# unit tests) it is the identity.
try:
    from micropython import const
except ImportError:  # CPython
    # mypy sees both branches: the stub's const is generic (Const_T -> Const_T)
    # and an untyped identity cannot repeat that signature without `typing`,
    # which MicroPython lacks. The fallback is correct; only its signature differs.
    def const(x):  # type: ignore[misc]
        return x
