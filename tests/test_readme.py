"""The README as a new user meets it: every code block runs as written, its tables match the
configs, and the plain install (``bash setup.sh``) has every package its commands import.

Python blocks run in a fresh interpreter each. Shell commands run for real in a sandbox
(symlinks to the checkout's code and configs, an empty HOME) where the data they name does
not exist: ``--help`` must exit 0; a command that trains, prepares or evaluates must stop
with exit 2 and one ``error:`` line naming the missing data path, which proves every flag
and config key in it valid. The setup and test commands at the top are not run: they must
be what setup.sh and .ci/run provide.
"""

from __future__ import annotations

import ast
import dataclasses
import fnmatch
import functools
import importlib.metadata
import importlib.util
import os
import pathlib
import re
import shlex
import subprocess
import sys
import textwrap
import tomllib

import pytest
from test_analysis_commands import table_rows

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
CONFIGS = sorted(p.name for p in (ROOT / "configs").glob("*.py"))

#: A line that starts a shell command in an indented block (anything else is text).
COMMAND_START = re.compile(r"(python3?|bash|sh|pip|\.venv/bin/\S+)\s")
SHELL_LANGUAGES = ("bash", "sh", "shell", "console", "")


@dataclasses.dataclass(frozen=True)
class Block:
  kind: str   # "python" | "shell" | "text"
  text: str
  line: int   # README line of the block's first line


def _fenced_kind(language: str) -> str:
  if language in ("python", "py"):
    return "python"
  return "shell" if language in SHELL_LANGUAGES else "text"


def _in_list(lines: list[str], i: int) -> bool:
  """True if line ``i`` continues a list item (then 4 spaces are not a code block)."""
  previous = next((line for line in reversed(lines[:i]) if line.strip()), "")
  return bool(re.match(r"\s*([-*+]|\d+\.)\s|  \S", previous))


def readme_blocks(text: str) -> list[Block]:
  """The fenced (```lang) and indented (4 spaces after a blank line) code blocks of ``text``."""
  lines, blocks, i = text.splitlines(), [], 0
  while i < len(lines):
    fence = re.match(r"```\s*([\w+-]*)\s*$", lines[i])
    if fence:
      end = next(j for j in range(i + 1, len(lines)) if lines[j].strip() == "```")
      blocks.append(Block(_fenced_kind(fence[1]), "\n".join(lines[i + 1:end]), i + 2))
      i = end + 1
    elif (lines[i].startswith("    ") and lines[i].strip() and (i == 0 or not lines[i - 1].strip())
          and not _in_list(lines, i)):
      end = i
      while end < len(lines) and (lines[end].startswith("    ") or not lines[end].strip()):
        end += 1
      body = textwrap.dedent("\n".join(lines[i:end])).strip("\n")
      blocks.append(Block("shell" if COMMAND_START.match(body) else "text", body, i + 1))
      i = end
    else:
      i += 1
  return blocks


def shell_commands(block: Block) -> list[tuple[int, str]]:
  """``(README line, command)`` for each command of a shell block (``\\`` lines joined)."""
  commands, pending, start = [], "", 0
  for offset, line in enumerate(block.text.splitlines()):
    if not pending:
      start = block.line + offset
      if not line.strip() or line.lstrip().startswith("#"):
        continue
    pending += line.strip()
    if pending.endswith("\\"):
      pending = pending[:-1].rstrip() + " "
    else:
      commands.append((start, pending))
      pending = ""
  return commands


def inline_commands(text: str) -> list[tuple[int, str]]:
  """``(README line, command)`` for each inline `python -m snnjax... --flag ...` of the prose
  and tables (a bare module name is a mention, not a command)."""
  return [(text.count("\n", 0, m.start()) + 1, m[1])
          for m in re.finditer(r"`(python -m snnjax[\w.]* [^`]*--[^`]*)`", text)]


BLOCKS = readme_blocks(README)
COMMANDS = [c for b in BLOCKS if b.kind == "shell" for c in shell_commands(b)]
SETUP_COMMANDS = [c for _, c in COMMANDS if c.startswith("bash setup.sh")]
RUN_COMMANDS = ([(line, c) for line, c in COMMANDS if not c.startswith("bash setup.sh")]
                + inline_commands(README))
PYTHON_BLOCKS = [b for b in BLOCKS if b.kind == "python"]

#: The README's placeholders and what the sandbox puts in their place: the default config;
#: a workdir; for train.py's optional overrides, data this machine does not have; an
#: alternative's first choice.
PLACEHOLDERS = {"configs/X.py": "configs/fmnist_vgg_sml.py", "DIR": "workdirs/readme",
                "[--config.key=value ...]": "--config.data.folder=data/missing",
                "[--checkpoint best|latest]": "--checkpoint best", "RAW": "data/raw",
                "OUT": "data/out"}

#: The argument whose path each entry point must name when it is missing.
MISSING_INPUT = {"train.py": "--config.data.folder", "snnjax.data.prepare": "--raw",
                 "snnjax.evaluate": "--workdir", "snnjax.probe": "--workdir",
                 "snnjax.robustness": "--workdir", "snnjax.inspect": "--workdir"}


def instantiate(command: str) -> str:
  """``command`` with its placeholders filled in (fails on one the test does not know)."""
  for placeholder, value in PLACEHOLDERS.items():
    command = re.sub(rf"(?<![\w/]){re.escape(placeholder)}(?![\w/])", value, command)
  unknown = [t for t in shlex.split(command) if "[" in t or re.search(r"(^|/)[A-Z]+(\.py)?$", t)]
  assert not unknown, f"placeholders {unknown} in {command!r}: give them a value in PLACEHOLDERS"
  return command


def entry_point(tokens: list[str]) -> str:
  """``train.py`` for ``python train.py ...``, the module for ``python -m MODULE ...``."""
  assert tokens[0] in ("python", "python3"), f"no rule for README command {shlex.join(tokens)!r}"
  return tokens[2] if tokens[1] == "-m" else tokens[1]


def argument(tokens: list[str], name: str) -> str | None:
  """The value of ``name`` (``--name value`` or ``--name=value``) in ``tokens``, if given."""
  for i, token in enumerate(tokens):
    if token == name and i + 1 < len(tokens):
      return tokens[i + 1]
    if token.startswith(name + "="):
      return token.split("=", 1)[1]
  return None


@pytest.fixture
def sandbox(tmp_path):
  """A checkout-like cwd (the repo's code and configs) with an empty HOME: ``(cwd, env)``."""
  for name in ("train.py", "configs", "snnjax"):
    (tmp_path / name).symlink_to(ROOT / name)
  home = tmp_path / "home"
  home.mkdir()
  xla_flags = re.sub(r"--xla_force_host_platform_device_count=\d+", "",  # conftest's 8 devices
                     os.environ.get("XLA_FLAGS", "")).strip()
  env = dict(os.environ, HOME=str(home), XLA_FLAGS=xla_flags,
             PATH=f"{pathlib.Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
  return tmp_path, env


def run(command: list[str], cwd: pathlib.Path, env: dict, stdin: str | None = None):
  return subprocess.run(command, cwd=cwd, env=env, input=stdin, capture_output=True, text=True,
                        timeout=300)


def test_the_readme_has_the_blocks_this_test_checks():
  kinds = [b.kind for b in BLOCKS]
  assert kinds.count("python") >= 1 and kinds.count("text") >= 1, kinds
  assert len(SETUP_COMMANDS) == 2 and len(RUN_COMMANDS) >= 6, COMMANDS


@pytest.mark.parametrize("block", PYTHON_BLOCKS, ids=lambda b: f"README.md:{b.line}")
def test_python_block_runs(block, sandbox):
  """Each block on its own, in a fresh interpreter, as a reader would paste it."""
  cwd, env = sandbox
  result = run([sys.executable, "-"], cwd, env, stdin=block.text)
  assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("line,command", RUN_COMMANDS,
                         ids=[f"README.md:{n}" for n, _ in RUN_COMMANDS])
def test_shell_command_runs_up_to_the_missing_data(line, command, sandbox):
  """``--help`` exits 0; anything else stops at the one-line error for its missing input."""
  cwd, env = sandbox
  command = instantiate(command)
  tokens = shlex.split(command)
  result = run(["bash", "-c", command], cwd, env)
  output = result.stdout + result.stderr
  assert "Traceback" not in output, output
  if "--help" in tokens:
    assert result.returncode == 0 and "usage:" in result.stdout, output
    return
  program = entry_point(tokens)
  assert program in MISSING_INPUT, f"README.md:{line}: add a rule for {program} to MISSING_INPUT"
  name = MISSING_INPUT[program]
  given = argument(tokens, name)
  assert given, f"README.md:{line}: {command!r} names no {name}"
  missing = given.replace("~", env["HOME"], 1) if given.startswith("~") else given
  assert not (cwd / missing).exists()
  errors = [l for l in result.stderr.splitlines() if l.startswith("error:")]
  assert result.returncode == 2 and len(errors) == 1, output
  assert given in errors[0] or missing in errors[0], errors[0]


def _code_lines(path: pathlib.Path) -> list[str]:
  return [l.strip() for l in path.read_text().splitlines() if l.strip() and not l.startswith("#")]


def test_the_setup_and_test_commands_are_what_setup_sh_and_ci_run():
  """The two top commands are not run here (minutes; the second would recurse)."""
  ci = _code_lines(ROOT / ".ci" / "run")
  test_command = f"{ci[-2]} && {ci[-1]}"
  assert test_command in SETUP_COMMANDS, (test_command, SETUP_COMMANDS)
  setup = (ROOT / "setup.sh").read_text()
  usages = re.findall(r"^#\s+(bash setup\.sh(?: \w+)?)\s{2,}", setup, re.M)
  assert usages == ["bash setup.sh", "bash setup.sh dev"], usages
  assert "python3 -m venv .venv" in setup
  (train,) = [c for c in SETUP_COMMANDS if c != test_command]
  setup_step, train_step = train.split(" && ")
  assert setup_step == "bash setup.sh"
  default = load_config("fmnist_vgg_sml.py")
  assert default.data.folder in setup   # setup.sh installs the default config's data
  docstring = (ROOT / "configs" / "fmnist_vgg_sml.py").read_text()
  assert train_step.replace(".venv/bin/python ", "python ", 1) in docstring
  assert "`fmnist_vgg_sml.py` (default)" in README


def test_the_layout_block_names_files_that_exist():
  (layout,) = [b for b in BLOCKS if b.kind == "text"]
  for line in layout.text.splitlines():
    if line.startswith(" "):
      continue   # a description's continuation
    first, *more = re.split(r"\s{2,}", line, maxsplit=1)[0].split(", ")
    folder = (ROOT / first).parent
    for path in [ROOT / first] + [folder / name for name in more]:
      assert path.exists(), f"README layout: {path.relative_to(ROOT)} does not exist"


@functools.cache
def _config_module(name: str):
  spec = importlib.util.spec_from_file_location(f"readme_{name[:-3]}", ROOT / "configs" / name)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def load_config(name: str, *args):
  return _config_module(name).get_config(*args)


def table(header: str) -> list[list[str]]:
  """The cells of each body row of the README table whose header row starts with ``header``."""
  return table_rows(README, header)


def _has_key(config, dotted: str) -> bool:
  node = config
  for part in dotted.split("."):
    if not hasattr(node, "keys") or part not in node:
      return False
    node = node[part]
  return True


def _model_name(c, m):
  names = {"SEW-ResNet-34": "sew_resnet34", "ResNet-34": "resnet34", "ResNet-19": "resnet19",
           "ResNet-18": "resnet18", "VGGSNN": "vggsnn", "VGG-small": "vgg_small",
           "depth toy net": "depth_net"}
  return [("model.name", names[m[1]], c.model.name)]


def _vgg_form(c, m):
  from snnjax.train import config as config_lib
  stated = "isnm" if m[1] else "standard"
  return [("VGG-small form", stated, config_lib.build_model(c, 10).form)]


def _gsg(c, m):
  s = c.estimator.schedule
  return [("estimator.schedule", ("beta", "gsg", float(m[1]), float(m[2]), m[3]),
           (s.param, s.kind, s.start, s.end, s.unit))]


def _chi(c, m):
  return [("estimator.chi", (True, float(m[1])), (c.estimator.chi.enabled, c.estimator.chi.target))]


def _optimizer(c, m):
  return [("optimizer", (m[1].lower(), float(m[2])),
           (c.optimizer.name, c.optimizer.learning_rate))]


def _input_size(c, m):
  size = c.data.image_size or c.data.events.sensor_size[0]
  return [("input size", int(m[1]), size)]


def _config_argument(c, m):
  del c
  surrogate = load_config(m[2], m[3]).model.surrogate
  return [(f"configs/{m[2]}:{m[3]} has {m[1]}={m[3]} in {surrogate!r}", True,
           f"{m[1]}={m[3]}" in surrogate)]


def _data(source, name=None):
  def check(c, m):
    del m
    return [("data.source", source, c.data.source)] + (
        [("data.name", name, c.data.name)] if name else [])
  return check


#: (pattern, checks) for the figures of the config table: ``checks(config, match)`` gives
#: (what, the README's value, the config's value) triples.
CONFIG_TABLE_RULES = [
    (r"(?<![-\w])(SEW-ResNet-34|ResNet-34|ResNet-19|ResNet-18|VGGSNN|VGG-small|depth toy net)",
     _model_name),
    (r"spiking ResNet\b", lambda c, m: [("model.name is a ResNet", True,
                                         c.model.name.startswith("resnet"))]),
    (r"VGG-small( \(ISNM\))?", _vgg_form),
    (r"\bT=(\d+)", lambda c, m: [("model.T", int(m[1]), c.model.T)]),
    (r"\bwidth 1/(\d+)", lambda c, m: [("model.width", 1 / int(m[1]), c.model.width)]),
    (r"\bthreshold (\d[\d.]*)", lambda c, m: [("model.v_threshold", float(m[1]),
                                               c.model.v_threshold)]),
    (r"\bIF neurons\b", lambda c, m: [("model.neuron", "if", c.model.neuron)]),
    (r"\bsoft reset\b", lambda c, m: [("model.reset", "soft", c.model.reset)]),
    (r"\b(rectangle|triangle|atan|dspike|gsg_tanh) surrogate\b",
     lambda c, m: [("model.surrogate", m[1], c.model.surrogate.split("(")[0])]),
    (r"\bheads? after (?:blocks? |conv )?(\d+(?:, \d+)*)",
     lambda c, m: [("sml.heads", tuple(int(h) for h in m[1].split(", ")),
                    tuple(c.sml.heads) if c.sml.enabled else ())]),
    (r"\bGSG \(beta ([\d.]+) -> ([\d.]+) per (step|epoch)\)", _gsg),
    (r"\bchi-guided widths \(target ([\d.]+)\)", _chi),
    (r"\((\w+): `configs/(\w+\.py):([^`]+)`\)", _config_argument),
    (r"`((?:model|sml|data|loss|optimizer|estimator)\.[\w.]+)(?:=[^`]*)?`",
     lambda c, m: [(f"key {m[1]}", True, _has_key(c, m[1]))]),
    (r"\b(\d+)x\1\b", _input_size),
    (r"\bFashion-MNIST IDX\b", _data("fashion_mnist_idx", "fashion_mnist")),
    (r"\bCIFAR python tarballs\b", _data("cifar_python")),
    (r"\bCIFAR-10 python tarball\b", _data("cifar_python", "cifar10")),
    (r"\bImageNet image folders\b", _data("image_folder", "imagenet2012")),
    (r"\bCIFAR10-DVS event files\b", _data("events", "cifar10")),
    (r"\bDVS128 Gesture event files\b", _data("events", "dvs128_gesture")),
    (r"\bN-MNIST event files\b", _data("events", "nmnist")),
    (r"\bno flip\b", lambda c, m: [("data.augment.flip", False, c.data.augment.flip)]),
    (r"(?<!no )\bflip\b", lambda c, m: [("data.augment.flip", True, c.data.augment.flip)]),
    (r"\broll \+-(\d+)", lambda c, m: [("data.augment.roll", int(m[1]), c.data.augment.roll)]),
    (r"\bno flip or roll\b", lambda c, m: [("data.augment.roll", 0, c.data.augment.roll)]),
    (r"\b(AdamW|Adam|SGD) (\d[\d.e-]*)", _optimizer),
    (r"\bwd (\d[\d.e-]*)", lambda c, m: [("optimizer.weight_decay", float(m[1]),
                                          c.optimizer.weight_decay)]),
    (r"\bcosine\b", lambda c, m: [("optimizer.schedule", "cosine", c.optimizer.schedule)]),
    (r"\bbatch (\d+)", lambda c, m: [("batch_size", int(m[1]), c.batch_size)]),
    (r"\b(\d+) epochs?\b", lambda c, m: [("num_epochs", float(m[1]), c.num_epochs)]),
]

CONFIG_TABLE = table("| config | model | data | recipe |")


def _row_configs(cell: str) -> list[str]:
  return re.findall(r"`([\w]+\.py)`", cell)


def test_the_config_table_lists_every_config_once():
  listed = [name for row in CONFIG_TABLE for name in _row_configs(row[0])]
  assert sorted(listed) == CONFIGS


#: A row may end with "`name.py:variant`: ..." stating what that variant overrides.
VARIANT_SEGMENT = re.compile(r"`([\w]+\.py):(\w+)`:")


def _row_segments(text: str) -> tuple[str, list[tuple[str, str]]]:
  """The row text about the base config, and (variant, text) for each variant segment."""
  parts = VARIANT_SEGMENT.split(text)  # [base, name, variant, text, name, variant, text, ...]
  return parts[0], [(parts[i + 1], parts[i + 2]) for i in range(1, len(parts), 3)]


def _table_checks(config, text: str) -> list[tuple[str, object, object]]:
  return [check for pattern, rule in CONFIG_TABLE_RULES
          for match in re.finditer(pattern, text) for check in rule(config, match)]


def _wrong(checks) -> list[str]:
  return [f"{what}: README {stated!r}, config {actual!r}"
          for what, stated, actual in checks if stated != actual]


@pytest.mark.parametrize("row", CONFIG_TABLE, ids=[r[0].split("`")[1] for r in CONFIG_TABLE])
def test_the_config_table_states_the_configs_values(row):
  base_text, variants = _row_segments(" | ".join(row[1:]))
  for name in _row_configs(row[0]):
    checks = _table_checks(load_config(name), base_text)
    assert len(checks) >= 5, f"{name}: the table row states too little this test reads: {base_text}"
    assert not _wrong(checks), f"configs/{name}: " + "; ".join(_wrong(checks))
  for variant, text in variants:
    name = _row_configs(row[0])[0]
    checks = _table_checks(load_config(name, variant), text)
    assert checks, f"{name}:{variant}: the table row states nothing this test reads: {text}"
    assert not _wrong(checks), f"configs/{name}:{variant}: " + "; ".join(_wrong(checks))


#: The data table's datasets: the source and data.name their configs must have.
DATASETS = {"Fashion-MNIST": ("fashion_mnist_idx", {"fashion_mnist"}),
            "CIFAR-10 / CIFAR-100": ("cifar_python", {"cifar10", "cifar100"}),
            "ImageNet": ("image_folder", {"imagenet2012"}),
            "CIFAR10-DVS": ("events", {"cifar10"}),
            "DVS128 Gesture": ("events", {"dvs128_gesture"}),
            "N-MNIST": ("events", {"nmnist"})}


def _related(a: str, b: str) -> bool:
  a, b = os.path.expanduser(a).rstrip("/"), os.path.expanduser(b).rstrip("/")
  return a == b or a.startswith(b + "/") or b.startswith(a + "/")


def test_the_data_table_matches_the_configs_data():
  rows = table("| dataset | configs |")
  seen = []
  for dataset, configs_cell, _, goes, _ in rows:
    source, names = DATASETS[dataset]
    paths = [p for p in re.findall(r"(?<![\w.])([~/][\w./-]*)", goes) if p.strip("/~")]
    for name in CONFIGS:
      if not any(fnmatch.fnmatch(name, g) for g in re.findall(r"`([\w*]+\.py)`", configs_cell)):
        continue
      seen.append(name)
      data = load_config(name).data
      assert (data.source, data.name in names) == (source, True), (name, dataset)
      assert not paths or any(_related(data.folder, p) for p in paths), (name, data.folder, paths)
  assert sorted(seen) == CONFIGS, "each config belongs to exactly one dataset row"


def test_every_config_override_in_the_readme_is_a_key():
  from snnjax.train import config as config_lib
  configs = [config_lib.base_config()] + [load_config(name) for name in CONFIGS]
  text = functools.reduce(lambda text, p: text.replace(p, ""), PLACEHOLDERS, README)
  keys = set(re.findall(r"--config\.([\w.]+)=", text))
  assert len(keys) >= 5
  unknown = sorted(k for k in keys if not any(_has_key(c, k) for c in configs))
  assert not unknown, unknown


def _third_party_imports(paths: list[pathlib.Path]) -> dict[str, str]:
  """Top-level third-party modules imported anywhere in ``paths``: module -> one importer."""
  found = {}
  for path in paths:
    for node in ast.walk(ast.parse(path.read_text())):
      if isinstance(node, ast.Import):
        modules = [alias.name for alias in node.names]
      elif isinstance(node, ast.ImportFrom) and not node.level:
        modules = [node.module]
      else:
        continue
      for module in modules:
        top = module.split(".")[0]
        if top not in sys.stdlib_module_names and top not in ("snnjax", "__future__"):
          found.setdefault(top, str(path.relative_to(ROOT)))
  return found


def _normalized(name: str) -> str:
  return re.sub(r"[-_.]+", "-", name).lower()


def test_the_plain_install_has_every_package_the_readme_commands_import():
  """``bash setup.sh`` installs the main dependencies only: they must cover snnjax, train.py
  and the figure script, plots included (matplotlib), without the dev extra."""
  project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
  main = {_normalized(re.match(r"[\w.-]+", d)[0]) for d in project["dependencies"]}
  code = sorted((ROOT / "snnjax").rglob("*.py")) + [ROOT / "train.py",
                                                    ROOT / "docs" / "make_surrogate_figure.py"]
  distributions = importlib.metadata.packages_distributions()
  missing = {module: where for module, where in _third_party_imports(code).items()
             if not {_normalized(d) for d in distributions.get(module, [])} & main}
  assert not missing, f"imported but not in pyproject's main dependencies: {missing}"
