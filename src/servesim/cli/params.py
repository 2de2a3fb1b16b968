"""Commands whose options are a table: ``simulate`` takes 60 options, ``plan`` 48.

typer reads a command's options from its signature (``inspect.signature``: each parameter's
``Annotated[type, typer.Option(...)]`` and default, in order). Written as a ``def``, such a
command is a 200-line signature before its first statement. Here the options are a module
constant, one ``Opt`` row each, and the command is ``def cmd(**params)`` decorated with
``with_options(TABLE)``, which gives it the signature typer would have read from the long
``def``: the same names, annotations, defaults and order, so ``--help`` and parsing are
unchanged. The command receives the parsed values as one dict, which is what its helpers
take (``config_flags(params)``, ``workload_flags(params)``).

    SIMULATE: tuple[Opt, ...] = (
        Opt("model", str | None, opts.model(HARDWARE)),
        Opt("progress", bool, typer.Option("--progress", help="..."), False),
    )

    @with_options(*SIMULATE)
    def simulate_cmd(**params: Any) -> None: ...
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

_F = TypeVar("_F", bound=Callable[..., Any])

#: ``Opt.default`` of a parameter without one (``ctx: typer.Context``, a required argument).
REQUIRED: Any = inspect.Parameter.empty


@dataclass(frozen=True, slots=True)
class Opt:
    """One option of a command: what ``name: Annotated[type, option] = default`` declares.

    Attributes:
        name: the parameter name (the key of the dict the command receives).
        type: the value's type, as typer converts to it (``int | None``, ``Path``, ``bool``).
        option: the ``typer.Option`` (or ``typer.Argument``): flag names, help, panel; None
            for a parameter typer fills itself (``Opt("ctx", typer.Context, None, REQUIRED)``).
        default: the value when the flag is not given (``REQUIRED``: none).
    """

    name: str
    type: Any
    option: Any
    default: Any = None


def with_options(*table: Opt) -> Callable[[_F], _F]:
    """Decorate ``def cmd(**params)`` so that typer reads ``table`` as its parameters.

    Sets ``__signature__`` (what ``inspect.signature`` returns) and ``__annotations__``
    (what ``typing.get_type_hints`` reads); both hold evaluated objects, built once here,
    so typer evaluates no string annotation when it parses a command line.
    """
    names = [opt.name for opt in table]
    if len(set(names)) != len(names):
        duplicated = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(f"options declared twice: {', '.join(duplicated)}")

    def decorate(func: _F) -> _F:
        parameters = [
            inspect.Parameter(
                opt.name,
                inspect.Parameter.KEYWORD_ONLY,
                default=opt.default,
                annotation=opt.type if opt.option is None else Annotated[opt.type, opt.option],
            )
            for opt in table
        ]
        func.__signature__ = inspect.Signature(parameters, return_annotation=None)  # type: ignore[attr-defined]
        func.__annotations__ = {p.name: p.annotation for p in parameters} | {"return": None}
        return func

    return decorate
