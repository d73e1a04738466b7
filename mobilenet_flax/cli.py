"""What every command-line program of the project shares.

* Quiet logs: the libraries' start-up and per-save INFO lines (TensorFlow's
  C++ banners, orbax, tfds, JAX's backend probing, deprecation notices) are
  hidden unless `--verbosity` is 1 or more. Importing this module first
  sets TensorFlow's C++ log level before TensorFlow can load.
* One-line errors: an `errors.Error`, a bad flag or config override, or an
  OS error (a full disk, a read-only directory) prints one `error: ...`
  line on stderr and exits 1, with no traceback; anything else is a bug and
  keeps its traceback. Orbax's own error records (a failed save or restore,
  logged with tracebacks from its threads) are hidden too unless
  `--verbosity` is 1 or more: the failure reaches the program as an
  exception, and that is the `error:` line.
* Config files: `--config=configs/x.py` is found relative to the current
  directory or, failing that, to the project's root, so the commands work
  from any directory.
"""

import contextlib
import difflib
import importlib.util
import logging as std_logging
import os
import pathlib
import re
import sys
import warnings
from collections.abc import Callable, Sequence
from typing import Any

# The project's root: configs/ and main.py live here.
ROOT = pathlib.Path(__file__).resolve().parent.parent


def _verbosity(argv: Sequence[str]) -> int:
  """absl's --verbosity/-v from the raw command line (flags are parsed
  later, after the libraries that log have loaded)."""
  for i, arg in enumerate(argv):
    match = re.fullmatch(r'--?(?:verbosity|v)(?:=(-?\d+))?', arg)
    if match:
      value = match.group(1)
      if value is None and i + 1 < len(argv):
        value = argv[i + 1]
      try:
        return int(value)
      except (TypeError, ValueError):
        return 0
  return 0


VERBOSE = _verbosity(sys.argv) > 0
if not VERBOSE:
  # TensorFlow's C++ side logs (oneDNN notices, absl init) before any
  # Python setting could stop it; 2 keeps its errors.
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

from absl import app, flags, logging  # noqa: E402

from mobilenet_flax import errors  # noqa: E402

# Exit status of a run stopped by SIGTERM after its checkpoint: a scheduler
# can requeue it (sysexits' EX_TEMPFAIL, "try again later").
EXIT_PREEMPTED = 75


class _QuietLibraries(std_logging.Filter):
  """Keeps library INFO chatter and deprecation notices out of the log."""

  _CHATTY = (
    '/orbax/',
    '/tensorflow_datasets/',
    '/tensorflow/',
    '/clu/',
    '/jax/_src/xla_bridge',
    '/jax/_src/distributed',
    '/absl/logging',
  )
  # Warnings that say nothing a user can act on: tfds notes a dataset
  # folder without metadata while it is being built for the first time.
  _HARMLESS = ('has no dataset_info.json',)

  def filter(self, record):
    path = record.pathname or ''
    if record.levelno >= std_logging.ERROR:
      # Orbax logs a failed write or read with tracebacks (hundreds for one
      # full disk) before raising it; the raised error is what is reported.
      return '/orbax/' not in path
    message = record.getMessage()
    if 'deprecat' in message.lower() or any(
      m in message for m in self._HARMLESS
    ):
      return False
    if record.levelno >= std_logging.WARNING:
      return True
    return not any(part in path for part in self._CHATTY)


def setup_logging() -> None:
  """Applies the quiet filter to absl's handler (the libraries log through
  Python loggers whose records reach it by propagation)."""
  if VERBOSE:
    return
  logging.get_absl_handler().python_handler.addFilter(_QuietLibraries())
  warnings.filterwarnings('ignore', category=DeprecationWarning)
  warnings.filterwarnings('ignore', category=FutureWarning)
  # absl prints its own "absl::InitializeLog" style notice through this
  # logger at start-up; the rest of the program logs through absl.
  std_logging.getLogger('tensorflow').setLevel(std_logging.ERROR)


@contextlib.contextmanager
def quiet_native_logs():
  """Silences what native code writes to stderr while loading (TensorFlow
  prints oneDNN and absl start-up notices from C++ at import, whatever its
  log-level settings say). Python errors still surface: they are raised,
  and printed after this block. With --verbosity >= 1, a no-op."""
  if VERBOSE:
    yield
    return
  sys.stderr.flush()
  saved = os.dup(2)
  try:
    with open(os.devnull, 'w') as devnull:
      os.dup2(devnull.fileno(), 2)
      yield
  finally:
    os.dup2(saved, 2)
    os.close(saved)


def import_tensorflow() -> Any:
  """Imports TensorFlow quietly (`quiet_native_logs`) and without Keras.

  TensorFlow's start-up imports all of Keras 3, with scikit-learn, pandas
  and matplotlib (about 3 s of a 10 s import), so that `tf.keras` is
  ready; nothing here uses `tf.keras`. Keras is hidden while TensorFlow
  loads, which skips that; `import keras` (keras_import) and `tf.keras`
  still work afterwards, loading Keras when first used.
  """
  hide = 'keras' not in sys.modules
  if hide:
    # A None entry reads as "not installed" to import and find_spec alike.
    sys.modules['keras'] = None
  try:
    with quiet_native_logs():
      import tensorflow as tf
  finally:
    if hide and sys.modules.get('keras', ...) is None:
      del sys.modules['keras']
  return tf


def fail(message: str, status: int = 1):
  """Prints `message` as the one `error:` line and exits."""
  first, *rest = str(message).strip().splitlines() or ['']
  print(f'error: {first}', file=sys.stderr)
  for line in rest:
    print(f'  {line.strip()}' if line.strip() else '', file=sys.stderr)
  sys.exit(status)


def resolve_config_paths(argv: Sequence[str], names=('config',)) -> list[str]:
  """Rewrites `--config=FILE[:args]` to a path that exists: FILE as given,
  else relative to the project root. A file found in neither is an error."""
  out = []
  for arg in argv:
    for name in names:
      prefix = f'--{name}='
      if not arg.startswith(prefix):
        continue
      path, colon, rest = arg[len(prefix) :].partition(':')
      if path and not os.path.exists(path):
        candidate = ROOT / path
        if not candidate.exists():
          fail(
            f'No config file {path!r}: looked in {os.getcwd()} and in {ROOT}.'
          )
        arg = f'{prefix}{candidate}{colon}{rest}'
    out.append(arg)
  return out


def _parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing, with config-file and override problems as one
  line (ml_collections raises plain AttributeErrors and multi-line
  OSErrors for a mistyped `--config.field` or a broken config file)."""
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    fail(f'{e}\nPass --help for the flags.')
  except (AttributeError, KeyError) as e:
    # ml_collections' way of saying that a `--config.x.y` names no field.
    fail(_unknown_field(argv, e))
  except (TypeError, ValueError, OSError) as e:
    message = str(e).strip().strip('\'"').replace('\\n', ' ')
    fail(f'bad flag or config override: {message}')


def _unknown_field(argv: Sequence[str], error: Exception) -> str:
  """'--config.alpah: no such config field (did you mean ...?)'."""
  inner = error
  while inner.args and isinstance(inner.args[0], BaseException):
    inner = inner.args[0]
  text = str(inner.args[0]) if inner.args else str(inner)
  match = re.match(r'\W*([\w-]+)', text)
  name = match.group(1) if match else text.strip()
  # The override that names it: `--config.model.alpah=0.5` for 'alpah'.
  flag, config = f'--config.{name}', 'config'
  for arg in argv:
    head, _, path = arg.partition('=')[0].lstrip('-').partition('.')
    if arg.startswith('--') and name in path.split('.'):
      flag, config = f'--{head}.{path}', head
      break
  close = [
    f'--{config}.{field}'
    for field in _config_fields(argv, config)
    if difflib.get_close_matches(name, [field.rpartition('.')[2]], cutoff=0.7)
  ]
  hint = f' (did you mean {" or ".join(close[:3])}?)' if close else ''
  return f'{flag}: no such config field{hint}'


def _config_fields(argv: Sequence[str], name: str) -> list[str]:
  """The dotted names of the fields of the config file flag `--name=`
  gives; [] when it cannot be loaded (the message then has no hint)."""
  for arg in argv:
    if not arg.startswith(f'--{name}='):
      continue
    path, _, config_arg = arg[len(f'--{name}=') :].partition(':')
    try:
      spec = importlib.util.spec_from_file_location('_config_for_hint', path)
      module = importlib.util.module_from_spec(spec)
      spec.loader.exec_module(module)
      config = module.get_config(*([config_arg] if config_arg else []))
      config = config.to_dict()
    except Exception:
      return []
    fields, todo = [], [('', config)]
    while todo:
      prefix, block = todo.pop()
      for key, value in block.items():
        if isinstance(value, dict):
          todo.append((f'{prefix}{key}.', value))
        else:
          fields.append(f'{prefix}{key}')
    return sorted(fields)
  return []


def run(main: Callable[[list[str]], None], config_flags=('config',)) -> None:
  """`absl.app.run(main)` with the project's logging and error handling."""

  def wrapped(argv):
    setup_logging()
    try:
      main(argv)
    except errors.Error as e:
      fail(str(e))
    except OSError as e:
      fail(f'{e}')

  sys.argv = resolve_config_paths(sys.argv, config_flags)
  app.run(wrapped, flags_parser=_parse_flags)
