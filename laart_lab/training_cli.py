"""The training subcommands (``fit``, ``validate``, ``test``, ``predict``): :class:`LaartCLI`, a ``LightningCLI``.

Kept apart from :mod:`laart_lab.cli` so that ``laart-lab --help``, ``--version``, ``plugins`` and
``recipes`` do not import Lightning. On top of Lightning's CLI it adds:

* registered component names as ``class_path`` values, and data facts filling model arguments;
* ``plugins.yaml`` (plugin provenance) next to each run's ``config.yaml``;
* an :class:`~laart_lab.callbacks.interrupt.InterruptCheckpoint` on every run, so Ctrl-C and SIGTERM
  leave a resumable checkpoint in the run's own ``version_N/checkpoints``;
* explicit resumption: a plain run starts fresh; ``--ckpt_path last`` is the newest checkpoint of the
  recipe's runs (``<save_dir>/<name>/version_*/checkpoints``), and resuming continues in the version
  folder the checkpoint came from (TensorBoard curves continue); the checkpoint is checked (readable,
  written by the recipe's model class) before anything is built;
* plain-line progress instead of the TQDM bar when the output is not a terminal.
"""

from __future__ import annotations

import functools
import inspect
import os
import sys
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from jsonargparse import Namespace
from lightning.pytorch import LightningDataModule, LightningModule, Trainer
from lightning.pytorch.callbacks import Callback, ProgressBar
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback
from lightning.pytorch.utilities import rank_zero_warn

from laart_lab import component_names
from laart_lab.callbacks.interrupt import InterruptCheckpoint
from laart_lab.checkpoints import (
    SPECIAL_CKPT_PATHS,
    CheckpointError,
    checkpoint_model_class,
    find_resumable,
    read_checkpoint,
    version_of,
)
from laart_lab.components.data import OffersDataFacts, match_data_facts
from laart_lab.errors import UserError
from laart_lab.quiet import silence_known_noise
from laart_lab.registry import get_registry, import_class_path

TRAINER_SUBCOMMANDS = ("fit", "validate", "test", "predict")


class ParsedConfigSaver:
    """The CLI's parser, except that ``save`` does not validate the config again.

    LightningCLI saves the config it already parsed and validated; jsonargparse's ``save`` checks it a second
    time, which costs ~3 s at the start of every LAART fit, validate, test and predict (the model's arguments
    hold the 2.4k-word vocabulary the data module filled in). Everything else goes to the parser.
    """

    def __init__(self, parser: LightningArgumentParser) -> None:
        self._parser = parser

    def save(self, *args: Any, **kwargs: Any) -> None:
        self._parser.save(*args, skip_validation=True, **kwargs)

    def __getattr__(self, name: str) -> Any:
        if name == "_parser":  # not set yet (copy, unpickling): no recursion through __getattr__
            raise AttributeError(name)
        return getattr(self._parser, name)


class LaartSaveConfigCallback(SaveConfigCallback):
    """Saves the resolved ``config.yaml`` next to the logs, plus ``plugins.yaml`` with plugin versions."""

    def __init__(self, parser: LightningArgumentParser, *args: Any, **kwargs: Any) -> None:
        super().__init__(ParsedConfigSaver(parser), *args, **kwargs)  # type: ignore[arg-type]

    def save_config(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        # save_config runs on rank 0 only: trainer.log_dir is a collective (broadcast) and would
        # deadlock under DDP, so read the logger's directory directly
        logger = trainer.loggers[0] if trainer.loggers else None
        log_dir = getattr(logger, "log_dir", None) or getattr(logger, "save_dir", None) or trainer.default_root_dir
        if log_dir is None:
            return
        os.makedirs(log_dir, exist_ok=True)
        with open(os.path.join(log_dir, "plugins.yaml"), "w", encoding="utf-8") as handle:
            yaml.safe_dump(get_registry().report(), handle, sort_keys=False)


def _active_config(cli: LightningCLI) -> Namespace:
    return cli.config[cli.subcommand] if cli.subcommand else cli.config


def fill_data_facts(config: Namespace) -> dict[str, Any]:
    """Fill model init args that the recipe left unset from the datamodule's ``data_facts()``.

    The contract is :class:`laart_lab.components.data.OffersDataFacts`: every model init arg of the same
    name as a fact that is unset or ``None`` takes the fact's value; a fact the model has no argument
    for is warned about, once.

    The data module built here is a second one: LightningCLI builds the run's own afterwards, through
    its instantiator, which records the data module's hyper-parameters for checkpoints.
    """
    data_spec, model_spec = config.get("data"), config.get("model")
    if not isinstance(data_spec, Namespace) or not isinstance(model_spec, Namespace):
        return {}
    data_class = import_class_path(data_spec.class_path)
    if not issubclass(data_class, OffersDataFacts):
        return {}
    init_args = data_spec.get("init_args") or Namespace()
    datamodule = data_class(**init_args.as_dict())
    model_class = import_class_path(model_spec.class_path)
    model_args = model_spec.get("init_args")
    match = match_data_facts(datamodule.data_facts(), model_class, model_args.as_dict() if model_args else {})
    message = match.unmatched_message(data_class.__name__, model_class.__name__)
    if message:
        rank_zero_warn(message)
    if match.filled and model_args is None:
        model_spec.init_args = model_args = Namespace()
    for key, value in match.filled.items():
        model_args[key] = value
    return match.filled


def argument_error_message(err: BaseException) -> str:
    """jsonargparse's error in one line: the union-subtype noise dropped, the real reasons kept."""
    noise = (
        "Does not validate against any of the Union subtypes",
        "Subtypes:",
        "Errors:",
        "Given value type:",
        "Given value:",
        "- Expected a <class 'NoneType'>",
        "Expected a <class 'NoneType'>",
    )
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    kept = [line.lstrip("- ").strip() for line in lines if not line.startswith(noise)]
    unique = list(dict.fromkeys(kept))
    return " ".join(unique) if unique else str(err)


def recipe_keys(subcommand: str = "fit") -> set[str]:
    """The top-level keys a recipe may have for ``subcommand``: those of LaartCLI's own parser."""
    return set(_recipe_keys(subcommand))


@functools.cache
def _recipe_keys(subcommand: str) -> frozenset[str]:
    class _ParserBuilt(Exception):
        pass

    class _ParserOnly(LaartCLI):
        def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
            raise _ParserBuilt(parser)  # stop once LightningCLI has built the parser: nothing is parsed

    try:
        _ParserOnly([], run=False)
    except _ParserBuilt as built:
        parser = built.args[0]
    else:  # pragma: no cover - LightningCLI always parses
        raise RuntimeError("LaartCLI did not build its parser")
    keys = {key.split(".", 1)[0] for key in parser.get_defaults().keys()} - {"config"}  # noqa: SIM118 (not iterable)
    # the subcommand's own arguments (fit's ckpt_path, ...), as LightningCLI adds them to its subparser
    skip = LightningCLI.subcommands().get(subcommand, set()) | {"self"}
    keys |= set(inspect.signature(getattr(Trainer, subcommand)).parameters) - skip
    return frozenset(keys)


# --------------------------------------------------------------------------------------------
# where a run's logs and checkpoints live (TensorBoardLogger / CSVLogger layout)
# --------------------------------------------------------------------------------------------
DEFAULT_LOGGER = "lightning.pytorch.loggers.TensorBoardLogger"


def _logger_spec(trainer_config: Namespace) -> Namespace | None:
    """The trainer's (first) logger spec, made explicit when the recipe relies on Lightning's default."""
    logger = trainer_config.get("logger")
    if isinstance(logger, list):
        logger = logger[0] if logger else None
    if logger is False:
        return None
    if logger is None or logger is True:
        root = trainer_config.get("default_root_dir") or os.getcwd()
        logger = Namespace(class_path=DEFAULT_LOGGER, init_args=Namespace(save_dir=str(root), name="lightning_logs"))
        trainer_config.logger = logger
    return logger if isinstance(logger, Namespace) and logger.get("class_path") else None


def _run_root(logger: Namespace) -> Path | None:
    init_args = logger.get("init_args") or Namespace()
    save_dir = init_args.get("save_dir")
    if save_dir is None:
        return None
    name = init_args.get("name")
    return Path(str(save_dir)) / str(name) if name else Path(str(save_dir))


class LaartCLI(LightningCLI):
    """LightningCLI for laart_lab: any LightningModule / LightningDataModule, chosen in the recipe."""

    def __init__(self, args: Sequence[str] | None = None, run: bool = True, **kwargs: Any) -> None:
        get_registry()  # import every plugin first: registered names must resolve while parsing
        component_names.install()
        silence_known_noise(_subcommand_of(args))
        kwargs.setdefault("save_config_callback", LaartSaveConfigCallback)
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})
        # exit_on_error=False: a parse error is raised (laart_lab.cli prints it in one line) instead of
        # jsonargparse printing the whole usage
        parser_options = {"parser_mode": "yaml", "exit_on_error": False}
        kwargs.setdefault("parser_kwargs", {**parser_options, **{name: parser_options for name in TRAINER_SUBCOMMANDS}})
        self.resumed_from: Path | None = None
        super().__init__(
            LightningModule,
            LightningDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            args=list(args) if args is not None else None,
            run=run,
            **kwargs,
        )

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        # a forced callback (Lightning's mechanism): every run gets one, configurable as --interrupt_checkpoint.*
        parser.add_lightning_class_args(InterruptCheckpoint, "interrupt_checkpoint")

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        super().parse_arguments(parser, args)
        # before LightningCLI reads the checkpoint's hyper-parameters into the config (right after parsing):
        # resolve `last`, and check the file and its model class, with errors that name them
        if self.config.get("subcommand"):
            self._resolve_checkpoint(self.config[self.config.subcommand])

    def before_instantiate_classes(self) -> None:
        config = _active_config(self)
        try:
            fill_data_facts(config)
        except zipfile.BadZipFile as err:  # zipfile names the member, not the archive: name it
            raise UserError(
                f"{_data_path(config) or 'the data archive'}: damaged zip archive ({err}); re-download or re-copy it"
            ) from err

    # -- resumption ---------------------------------------------------------------------------
    def _resolve_checkpoint(self, config: Namespace) -> None:
        """Turn ``--ckpt_path last`` into a path, check the checkpoint, and resume in its version folder."""
        ckpt_path = config.get("ckpt_path")
        if ckpt_path is None:
            return
        trainer_config = config.get("trainer") or Namespace()
        logger = _logger_spec(trainer_config)
        run_root = _run_root(logger) if logger is not None else None
        if str(ckpt_path) == "last":
            extra = [cb.init_args.dirpath for cb in _callback_specs(trainer_config, "OnExceptionCheckpoint")]
            found = find_resumable(run_root, [Path(d) / "on_exception.ckpt" for d in extra if d]) if run_root else None
            if found is None:
                where = f"{run_root}/version_*/checkpoints" if run_root else "the run folder (no logger)"
                print(f"--ckpt_path last: no checkpoint of this recipe under {where}; starting a new run")
                config.ckpt_path = None
                return
            ckpt_path = config.ckpt_path = str(found)
        elif str(ckpt_path) in SPECIAL_CKPT_PATHS:
            return  # "best" / "hpc" / registry: Lightning's own meaning
        if config.get("weights_only") is None and "weights_only" in config:
            config.weights_only = True  # checkpoints hold tensors and plain data only: no arbitrary unpickling
        checkpoint = read_checkpoint(ckpt_path, map_location="cpu")
        trained_with = checkpoint_model_class(checkpoint)
        model_spec = config.get("model")
        wanted = model_spec.get("class_path") if isinstance(model_spec, Namespace) else None
        if trained_with and wanted and trained_with != wanted:
            folder = Path(ckpt_path).resolve().parent.parent / "config.yaml"
            hint = f" (its recipe: --config {folder})" if folder.is_file() else ""
            raise CheckpointError(
                f"checkpoint {ckpt_path} was written by {trained_with}, but this recipe's model is {wanted}; "
                f"run it with the recipe it was trained with{hint}"
            )
        step, epoch = checkpoint.get("global_step", "?"), checkpoint.get("epoch", "?")
        subcommand = self.config.get("subcommand")
        if subcommand != "fit":
            print(f"{subcommand}: using checkpoint {ckpt_path} (epoch {epoch}, step {step})")
            return
        self.resumed_from = Path(ckpt_path)
        silence_known_noise("resume")
        version = version_of(ckpt_path, run_root) if run_root is not None else None
        if version is not None and logger is not None:
            if logger.get("init_args") is None:
                logger.init_args = Namespace()
            logger.init_args.version = version  # same folder: TensorBoard curves continue
        where = f" in {run_root / version}" if version and run_root else ""
        print(f"resuming from {ckpt_path} (epoch {epoch}, step {step}){where}")

    # -- trainer ------------------------------------------------------------------------------
    def _instantiate_trainer(self, config: dict[str, Any], callbacks: list[Callback]) -> Trainer:
        given = config.get("callbacks") or []
        given = given if isinstance(given, list) else [given]
        wants_bar = config.get("enable_progress_bar") is not False
        if wants_bar and not _is_terminal() and not any(isinstance(cb, ProgressBar) for cb in given + callbacks):
            from laart_lab.callbacks.progress import LineProgressBar

            callbacks = [*callbacks, LineProgressBar(every=max(50, int(config.get("log_every_n_steps") or 50)))]
        return super()._instantiate_trainer(config, callbacks)


def _callback_specs(trainer_config: Namespace, class_name: str) -> list[Namespace]:
    callbacks = trainer_config.get("callbacks") or []
    callbacks = callbacks if isinstance(callbacks, list) else [callbacks]
    return [
        cb
        for cb in callbacks
        if isinstance(cb, Namespace)
        and str(cb.get("class_path", "")).rsplit(".", 1)[-1] == class_name
        and cb.get("init_args") is not None
    ]


def _data_path(config: Namespace) -> str | None:
    data = config.get("data")
    init_args = data.get("init_args") if isinstance(data, Namespace) else None
    path = init_args.get("path") if isinstance(init_args, Namespace) else None
    return str(path) if path else None


def _subcommand_of(args: Sequence[str] | None) -> str | None:
    args = list(sys.argv[1:] if args is None else args)
    return next((arg for arg in args if arg in TRAINER_SUBCOMMANDS), None)


def _is_terminal() -> bool:
    try:
        return sys.stdout.isatty()
    except (AttributeError, ValueError):
        return False
