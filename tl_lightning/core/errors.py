"""User-facing errors: one clear line naming the problem and the fix.

`main.py` catches `UserError` and prints `error: <message>` without a traceback, exit code 2.
"""


class UserError(Exception):
    """A mistake in the user's config, data or environment; the message says how to fix it."""


class DataError(UserError):
    """A data file or item that cannot be read; the message names the file and the item or line."""


def as_dataclass(cls: type, value):
    """Accept a dataclass instance or a dict of its fields (LightningCLI can pass either); unknown keys are a
    `UserError` naming the valid ones."""
    if value is None or isinstance(value, cls):
        return value
    if not isinstance(value, dict):
        raise UserError(f"{cls.__name__}: expected a mapping, got {type(value).__name__}")
    import dataclasses

    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(value) - names
    if unknown:
        raise UserError(f"{cls.__name__}: unknown key(s) {sorted(unknown)}; valid keys: {sorted(names)}")
    kwargs = dict(value)
    for f in dataclasses.fields(cls):  # nested settings (e.g. ModelSettings.lora)
        if f.name in kwargs and isinstance(kwargs[f.name], dict) and dataclasses.is_dataclass(_nested_type(cls,
                                                                                                           f.name)):
            kwargs[f.name] = as_dataclass(_nested_type(cls, f.name), kwargs[f.name])
    return cls(**kwargs)


def _nested_type(cls: type, name: str):
    import typing

    hint = typing.get_type_hints(cls)[name]
    for arg in (typing.get_args(hint) or (hint,)):
        if isinstance(arg, type):
            import dataclasses

            if dataclasses.is_dataclass(arg):
                return arg
    return None


def to_plain(value):
    """Settings and components → plain data, safe for `weights_only` checkpoints (a record, not a recipe: resume
    rebuilds everything from the config). Settings dataclasses become dicts of their fields; components (instances
    of our ABC interfaces) become `{"class_path", "init_args"}`; other objects their class path."""
    import abc
    import dataclasses

    if isinstance(value, (str, int, float, bool, type(None))):
        return value
    if isinstance(value, dict):
        return {k: to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_plain(v) for v in value]
    cls = next(c for c in type(value).__mro__ if not c.__module__.startswith("jsonargparse"))  # unwrap lazy_instance
    class_path = f"{cls.__module__}.{cls.__qualname__}"
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: to_plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        return {"class_path": class_path, "init_args": fields} if isinstance(value, abc.ABC) else fields
    if isinstance(value, abc.ABC):
        return {"class_path": class_path}
    return None if callable(value) else class_path  # e.g. an optimizer factory: rebuilt from the config
