"""What fire lacks, added on top of it: the listing of every command, each command's help with
its defaults and examples, and the command line checked and typed against the command's
signature before fire calls anything.

fire stays the engine: it receives `command --name=<Python literal>` for every argument and makes
the call. Before that, `parse` has refused unknown commands and flags (with a "did you mean"),
missing values, extra arguments and values of the wrong type, and has turned every value into
the type the signature declares (so `--api-key 123` stays the string "123"). Only the standard
library is imported here, so `--help` is instant.
"""

from __future__ import annotations

import difflib
import inspect
import re
import textwrap
from dataclasses import dataclass, field

from vdata_hub.errors import UsageError

HELP_FLAGS = ("-h", "--help")
WIDTH = 100
FLAG = re.compile(r"^(--.+|-[A-Za-z].*)$")  # fire's rule: `-1` is a value, `-x` and `--x` are flags
BOOL_WORDS = {"true": True, "yes": True, "on": True, "1": True, "false": False, "no": False, "off": False, "0": False}


@dataclass
class Option:
    """One parameter of a command as the command line sees it."""

    name: str  # the library's name: api_key
    kind: str  # str, int, float, bool, or "str|bool" (a bare flag is True, e.g. `pull --sql`)
    default: object
    positional: bool  # may be given without its flag (parameters before the `*`)
    required: bool = False
    doc: str = ""

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def metavar(self) -> str:
        return {"int": "N", "float": "NUMBER"}.get(self.kind, self.name.upper())

    def convert(self, text: str, shown: str):
        """The command line's text as a value of this option's type; UsageError when it is not one."""
        if self.kind == "bool":
            if text.lower() not in BOOL_WORDS:
                raise UsageError(f"{shown} takes no value, or true/false; not {text!r}")
            return BOOL_WORDS[text.lower()]
        if self.kind == "int":
            try:
                return int(text)
            except ValueError:
                raise UsageError(f"{shown} expects a whole number, not {text!r}") from None
        if self.kind == "float":
            try:
                value = float(text)
            except ValueError:
                value = float("nan")
            if value != value or value in (float("inf"), float("-inf")):
                raise UsageError(f"{shown} expects a number, not {text!r}")
            return value
        return text


@dataclass
class Command:
    """A command (or a group of commands, such as `eval`) found on the root object."""

    path: list  # ["eval", "report"]
    target: object  # the bound method, or the group's object
    short_flags: dict = field(default_factory=dict)  # "-k": ("api_key", None), "-j": ("format", "json")
    long_aliases: dict = field(default_factory=dict)  # "--apikey": "api_key"

    @property
    def is_group(self) -> bool:
        return _is_group(self.target)

    @property
    def usage_name(self) -> str:
        return "vdata " + " ".join(self.path)

    def options(self) -> dict[str, Option]:
        docs = parse_docstring(self.target.__doc__ or "")["args"]
        found = {}
        for parameter in list(inspect.signature(self.target).parameters.values()):
            if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
                continue
            default = None if parameter.default is parameter.empty else parameter.default
            found[parameter.name] = Option(
                name=parameter.name, kind=_kind(parameter.annotation, default), default=default,
                positional=parameter.kind == parameter.POSITIONAL_OR_KEYWORD,
                required=parameter.default is parameter.empty, doc=docs.get(parameter.name, ""))
        return found


@dataclass
class Parsed:
    """What the command line asks for: a help text to print, or a call for fire to make."""

    command: Command | None = None
    help: str | None = None
    fire_argv: list = field(default_factory=list)
    values: dict = field(default_factory=dict)

    def with_flags(self, message: str) -> str:
        """A library message with its parameter names (`max_cost`) shown as this command's flags."""
        if self.command is None or self.command.is_group:
            return message
        return as_flags(message, self.command.options())


def as_flags(message: str, names) -> str:
    """`max_cost` in a library message becomes --max-cost when it is one of `names` (parameters)."""
    def flag(match: re.Match) -> str:
        name = match.group(1)
        return "--" + name.replace("_", "-") if name in names else match.group(0)

    return re.sub(r"`([a-z][a-z0-9_]*)`", flag, message)


def _kind(annotation, default) -> str:
    """str, int, float, bool or "str|bool", from the annotation (a string under `from __future__
    import annotations`), else from the default's type."""
    if annotation is inspect.Parameter.empty:
        return {bool: "bool", int: "int", float: "float"}.get(type(default), "str")
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", str(annotation))
    names = {part.strip() for part in re.split(r"[|\[\],]", text.replace("Optional", "")) if part.strip()}
    names.discard("None")
    if names == {"str", "bool"}:
        return "str|bool"
    if len(names) == 1 and next(iter(names)) in ("str", "int", "float", "bool"):
        return next(iter(names))
    return "str"


def find_command(root, words: list[str], aliases: dict, short_flags: dict, long_aliases: dict) -> tuple[Command, int]:
    """The command named by the first word(s) of the command line, and how many words named it."""
    target, path = root, []
    for word in words:
        if word.startswith("-") or (path and not _is_group(target)):
            break
        name = aliases.get(word, word) if not path else word
        attribute = name.replace("-", "_")
        choices = command_names(target)
        if attribute not in choices:
            where = "vdata " + " ".join(path + [""]) if path else "vdata "
            shown = [c.replace("_", "-") for c in choices]
            close = difflib.get_close_matches(word.replace("_", "-"), shown, n=1)
            hint = f"did you mean `{where}{close[0]}`? " if close else ""
            raise UsageError(f"unknown command `{where}{word}`: {hint}commands: {', '.join(shown)} "
                             f"(run `{where.strip()} --help`)")
        target = getattr(target, attribute)
        path.append(name)
    if not path:
        return Command(path=[], target=root), 0
    key = " ".join(path)
    return Command(path=path, target=target, short_flags=short_flags.get(key, {}),
                   long_aliases=long_aliases.get(key, {})), len(path)


def _is_group(target) -> bool:
    """A group (the root object, `eval`) holds commands; a command is a method."""
    return not (inspect.ismethod(target) or inspect.isfunction(target))


def command_names(target) -> list[str]:
    """Public commands of a root or group object, in the order the class defines them."""
    names = []
    for klass in reversed(type(target).__mro__):
        for name in vars(klass):
            if not name.startswith("_") and name not in names:
                names.append(name)
    return [name for name in names if callable(getattr(target, name, None)) or _has_commands(getattr(target, name))]


def _has_commands(value) -> bool:
    return any(callable(getattr(value, name, None)) and not name.startswith("_") for name in vars(type(value)))


def parse(argv: list[str], root, aliases: dict, short_flags: dict, long_aliases: dict) -> Parsed:
    """Check the command line against the command's signature; see the module docstring."""
    words, fire_extra = (argv[:argv.index("--")], argv[argv.index("--"):]) if "--" in argv else (argv, [])
    command, used = find_command(root, words, aliases, short_flags, long_aliases)
    rest = words[used:]
    if command.is_group or any(word in HELP_FLAGS for word in rest):
        if command.is_group and rest and not any(word in HELP_FLAGS for word in rest):
            where = command.usage_name if command.path else "vdata"
            raise UsageError(f"`{where}` needs a command first, not {rest[0]}: run `{where} --help`")
        return Parsed(command=command, help=render_help(command, aliases))
    values = bind(command, rest)
    fire_argv = [*command.path] + [f"--{name}={value!r}" for name, value in values.items()] + fire_extra
    return Parsed(command=command, fire_argv=fire_argv, values=values)


def bind(command: Command, words: list[str]) -> dict:
    """{parameter: typed value} from the words after the command's name."""
    options = command.options()
    positional = [option for option in options.values() if option.positional]
    values, index, given_positionally = {}, 0, 0
    while index < len(words):
        word = words[index]
        index += 1
        if not FLAG.match(word):
            if given_positionally >= len(positional):
                expected = " ".join(option.name.upper() for option in positional) or "no arguments"
                raise UsageError(f"unexpected argument {word!r}: `{command.usage_name}` takes {expected} "
                                 f"(run `{command.usage_name} --help`)")
            option = positional[given_positionally]
            given_positionally += 1
            values[option.name] = option.convert(word, option.name.upper())
            continue
        name, has_value, text = word.partition("=")
        option, value, negated = _resolve_flag(command, options, name)
        if value is not None:  # a shorthand that carries its value (-j: --format json)
            values[option.name] = value
        elif option.kind == "bool":
            value = option.convert(text, name) if has_value else True
            values[option.name] = not value if negated else value
        elif has_value:
            values[option.name] = option.convert(text, name)
        elif index < len(words) and not FLAG.match(words[index]):
            values[option.name] = option.convert(words[index], name)
            index += 1
        elif option.kind == "str|bool":
            values[option.name] = True
        else:
            raise UsageError(f"{name} needs a value: {name} {option.metavar}")
    missing = [option for option in options.values() if option.required and option.name not in values]
    if missing:
        raise UsageError(f"`{command.usage_name}` needs {' '.join(o.name.upper() for o in missing)} "
                         f"(run `{command.usage_name} --help`)")
    return values


def _resolve_flag(command: Command, options: dict, name: str) -> tuple[Option, object, bool]:
    """The option a flag names (long, alias, shorthand or --noFLAG), the value a shorthand
    carries (-j: "json"), and whether the flag negates a boolean."""
    if name in command.short_flags:
        target, value = command.short_flags[name]
        return options[target], value, False
    key = command.long_aliases.get(name) or name.lstrip("-").replace("-", "_")
    if name.startswith("--") and key in options:
        return options[key], None, False
    for prefix in ("no_", "no"):
        option = options.get(key[len(prefix):]) if key.startswith(prefix) else None
        if name.startswith("--") and option is not None and option.kind == "bool":
            return option, None, True
    flags = [option.flag for option in options.values()] + list(command.short_flags) + list(command.long_aliases)
    close = difflib.get_close_matches(name, flags, n=1, cutoff=0.6)
    hint = f"did you mean {close[0]}? " if close else ""
    listed = ", ".join(option.flag for option in options.values()) or "none"
    raise UsageError(f"unknown option {name} for `{command.usage_name}`: {hint}"
                     f"its options are {listed} (run `{command.usage_name} --help`)")


# ---- help -------------------------------------------------------------------------------------


def parse_docstring(doc: str) -> dict:
    """{"summary", "description", "examples", "args": {name: text}} of a Google-style docstring."""
    lines = inspect.cleandoc(doc).splitlines() if doc else []
    sections = {"": []}
    current = ""
    for line in lines:
        if line.strip() in ("Examples:", "Args:") and not line.startswith(" "):
            current = line.strip()[:-1].lower()
            sections[current] = []
        else:
            sections[current].append(line)
    body = "\n".join(sections[""]).strip()
    summary, _, description = body.partition("\n\n")
    args, name = {}, None
    for line in sections.get("args", []):
        match = re.match(r"^\s{0,4}(\w+):\s*(.*)$", line)
        if match and len(line) - len(line.lstrip()) <= 4:
            name = match.group(1)
            args[name] = match.group(2).strip()
        elif name and line.strip():
            args[name] += " " + line.strip()
    examples = textwrap.dedent("\n".join(sections.get("examples", []))).strip("\n")
    return {"summary": " ".join(summary.split()), "description": description.strip(),
            "examples": examples, "args": args}


def summary_of(target) -> str:
    return parse_docstring(target.__doc__ or "")["summary"]


def render_help(command: Command, aliases: dict) -> str:
    if command.is_group:
        return _group_help(command, aliases)
    return _command_help(command, aliases)


def _group_help(command: Command, aliases: dict) -> str:
    doc = parse_docstring(command.target.__doc__ or "")
    where = command.usage_name if command.path else "vdata"
    names = {target: alias for alias, target in aliases.items()} if not command.path else {}
    rows = []
    for name in command_names(command.target):
        member = getattr(command.target, name)
        label = name.replace("_", "-") + (f" ({names[name]})" if name in names else "")
        if _is_group(member):
            rows.append((label, summary_of(member)))
            rows += [(f"  {sub.replace('_', '-')}", summary_of(getattr(member, sub))) for sub in command_names(member)]
        else:
            rows.append((label, summary_of(member)))
    parts = [f"Usage: {where} COMMAND [ARGUMENTS] [OPTIONS]\n       {where} COMMAND --help    "
             "a command's options and examples", doc["summary"]]
    if doc["description"]:
        parts.append(doc["description"])
    parts.append("Commands:\n" + _table(rows))
    if doc["examples"]:
        parts.append("Examples:\n" + textwrap.indent(doc["examples"], "  "))
    parts.append("General options:\n" + _table([("-h, --help", "show this help and exit")]))
    return "\n\n".join(parts)


def _command_help(command: Command, aliases: dict) -> str:
    doc = parse_docstring(command.target.__doc__ or "")
    options = command.options()
    positional = [o for o in options.values() if o.positional]
    usage = command.usage_name + "".join(
        f" {o.name.upper()}" if o.required else f" [{o.name.upper()}]" for o in positional)
    usage += " [OPTIONS]" if len(positional) < len(options) else ""
    alias = [name for name, target in aliases.items() if [target] == command.path]
    parts = [f"Usage: {usage}" + "".join(f"\n       vdata {a}{usage[len(command.usage_name):]}" for a in alias),
             doc["summary"]]
    if doc["description"]:
        parts.append(doc["description"])
    if positional:
        parts.append("Arguments:\n" + _table([(o.name.upper(), _described(o)) for o in positional]))
    shorthands = {}
    for short, (name, value) in command.short_flags.items():
        shorthands.setdefault(name, []).append(short if value is None else f"{short} ({value})")
    for alias_flag, name in command.long_aliases.items():
        shorthands.setdefault(name, []).append(alias_flag)
    rows = [(_flag_label(o, shorthands.get(o.name, [])), _described(o)) for o in options.values() if not o.positional]
    rows.append(("-h, --help", "show this help and exit"))
    parts.append("Options:\n" + _table(rows))
    if doc["examples"]:
        parts.append("Examples:\n" + textwrap.indent(doc["examples"], "  "))
    return "\n\n".join(parts)


def _flag_label(option: Option, shorthands: list) -> str:
    if option.kind == "bool":
        flag = f"{option.flag} / --no{option.name.replace('_', '-')}" if option.default else option.flag
    elif option.kind == "str|bool":
        flag = f"{option.flag} [{option.name.upper()}]"
    else:
        flag = f"{option.flag} {option.metavar}"
    return ", ".join(shorthands + [flag])


def _described(option: Option) -> str:
    text = option.doc or ""
    if option.kind == "bool":
        shown = "on" if option.default else None
    else:
        shown = None if option.default in (None, "") or "default" in text.lower() else option.default
    if shown is None:
        return text
    return text[:-1] + f" (default: {shown})." if text.endswith(".") else f"{text} (default: {shown})".strip()


def _table(rows: list[tuple[str, str]]) -> str:
    width = min(28, max((len(left) for left, _ in rows), default=0) + 2)
    out = []
    for left, right in rows:
        wrapped = textwrap.wrap(right, WIDTH - width - 2) or [""]
        if len(left) + 2 > width:
            out.append(f"  {left}")
            out += [f"  {'':<{width}}{line}" for line in wrapped]
        else:
            out.append(f"  {left:<{width}}{wrapped[0]}".rstrip())
            out += [f"  {'':<{width}}{line}" for line in wrapped[1:]]
    return "\n".join(out)
