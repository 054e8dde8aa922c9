"""Lazy re-exports (PEP 562) for the package ``__init__``\\ s of ``txsio`` and ``txsio.engineio``.

A package keeps a table ``{public name: module that defines it}``; its module-level
``__getattr__`` calls :func:`load` when a name is first used, and its ``__dir__`` calls
:func:`names`.  Importing the package then imports none of those modules, so a pure module
(``txsio.protocol``, ``txsio.engineio.packet``) imports nothing of Twisted through its parents.

Stdlib only.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Iterable, Mapping

__all__ = ["load", "names"]


def load(package: str, exports: Mapping[str, str], name: str) -> object:
    """Import ``name`` from the module ``exports`` names for it, and keep it in the package,
    where later lookups find it without calling ``__getattr__`` again; a name that is not
    in ``exports`` but names a submodule imports that submodule.

    :param package: the package's ``__name__``.
    :param exports: public name -> absolute name of the module that defines it.
    :param name: the attribute asked for.
    :raises AttributeError: ``name`` is neither in ``exports`` nor a submodule.
    """
    module = exports.get(name)
    if module is None:
        submodule = f"{package}.{name}"
        # Importing the package used to import its submodules too: ``import txsio`` then
        # ``txsio.protocol.encode(...)`` keeps working.
        if name.isidentifier() and not name.startswith("__") \
                and importlib.util.find_spec(submodule) is not None:
            return importlib.import_module(submodule)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    setattr(sys.modules[package], name, value)
    return value


def names(package: str, public: Iterable[str]) -> list[str]:
    """What ``dir(package)`` lists: what it holds now and every public name.

    :param package: the package's ``__name__``.
    :param public: its ``__all__``.
    """
    return sorted(set(vars(sys.modules[package])) | set(public))
