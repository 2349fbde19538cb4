"""The champion mirror's start in the stream job's driver: its first look at the registry in the
background, predict-bars waiting for it, and a stop that never leaves a first look half done."""

from __future__ import annotations

import http.server
import importlib.util
import os
import socket
import subprocess
import sys
import threading
import time

import pytest

from finstream.core.config import Settings
from finstream.core.errors import UserError
from finstream.serving.champions import ChampionMirror
from finstream.stores import registry


class Gate:
    """A sync that blocks until released, counting its calls."""

    def __init__(self, error: Exception | None = None):
        self.release, self.calls, self.error = threading.Event(), 0, error

    def __call__(self) -> None:
        self.calls += 1
        assert self.release.wait(10)
        if self.error:
            raise self.error


@pytest.fixture
def mirror(tmp_path):
    settings = Settings.load(environ={"MODEL_DIR": str(tmp_path / "models"),
                                      "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"})
    return ChampionMirror(settings, ("lags",), poll_seconds=3600)


def test_a_background_first_sync_is_waited_for_by_ready(mirror):
    mirror.sync = gate = Gate()
    mirror.start(wait=False)  # returns while the first sync runs
    assert not mirror.ready(timeout=0.2)
    gate.release.set()
    assert mirror.ready(timeout=10)
    assert gate.calls == 1
    mirror.stop()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # the thread's traceback
def test_ready_returns_even_when_the_first_sync_fails(mirror):
    mirror.sync = gate = Gate(RuntimeError("a bug in the sync"))
    gate.release.set()
    mirror.start(wait=False)
    assert mirror.ready(timeout=10)
    mirror.stop()


def test_a_stop_before_the_first_sync_began_skips_it(mirror):
    mirror.sync = gate = Gate()
    mirror.stop()  # the job failed before the thread ran
    mirror._run()
    assert gate.calls == 0 and mirror.ready(timeout=0)


def test_a_waited_first_sync_is_done_on_return(mirror):
    mirror.sync = gate = Gate()
    gate.release.set()
    mirror.start()
    assert gate.calls == 1 and mirror.ready(timeout=0)
    mirror.stop()


@pytest.mark.parametrize(("uri", "existing", "expected"), [
    ("sqlite:///{tmp}/mlflow.db", False, True),   # the embedded store, not made yet: migrations
    ("sqlite:///{tmp}/mlflow.db", True, False),
    ("postgresql://u@db/mlflow", False, True),
    ("http://127.0.0.1:5000", False, False),
    ("https://mlflow.example.org", False, False),
    ("file:///{tmp}/mlruns", False, False),
])
def test_only_a_database_store_not_made_yet_may_migrate(tmp_path, uri, existing, expected):
    uri = uri.format(tmp=tmp_path)
    if existing:
        (tmp_path / "mlflow.db").write_bytes(b"SQLite format 3\x00")  # made (an empty file is made again)
    assert registry.may_migrate(Settings.load(environ={"MLFLOW_TRACKING_URI": uri})) is expected


def refused(uri: str, timeout: int = 10) -> tuple[str, float]:
    """require_store's line for the tracking URI, and how long it took."""
    started = time.monotonic()
    with pytest.raises(UserError) as error:
        registry.require_store(Settings.load(environ={"MLFLOW_TRACKING_URI": uri}), timeout=timeout)
    return str(error.value), time.monotonic() - started


class Answering(http.server.BaseHTTPRequestHandler):
    """Every request answered with one status (a proxy in front of a stopped MLflow: 503)."""

    status = 503

    def do_GET(self):  # noqa: N802 - the handler's name
        self.send_error(self.status)

    do_POST = do_GET  # noqa: N815

    def log_message(self, *args):
        pass


@pytest.fixture
def server_503():
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), Answering) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        yield server.server_address[1]
        server.shutdown()


def test_a_tracking_server_that_does_not_answer_is_reported_at_once_without_mlflows_retries(monkeypatch):
    """MLflow's client retries for about four minutes: the commands' check asks once, and the
    environment MLflow reads its retries from is as it was afterwards."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "7")
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_TIMEOUT", raising=False)
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        uri = f"http://127.0.0.1:{closed.getsockname()[1]}"  # bound, not listening: refused
        line, seconds = refused(uri)
    assert line == (f"cannot use the MLflow tracking store at {uri} ([Errno 111] Connection refused): set "
                    "MLFLOW_TRACKING_URI to a reachable server, or leave it empty for the embedded store under "
                    ".local/mlflow")
    assert seconds < 5
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "7" and "MLFLOW_HTTP_REQUEST_TIMEOUT" not in os.environ

    with socket.socket() as silent:  # accepts, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        line, seconds = refused(f"http://127.0.0.1:{silent.getsockname()[1]}", timeout=1)
    assert "(Read timed out)" in line and seconds < 5


def test_a_server_answering_503_or_without_tls_is_reported_at_once_with_its_reason(server_503):
    line, seconds = refused(f"http://127.0.0.1:{server_503}")
    assert "(too many 503 error responses)" in line and seconds < 5
    line, seconds = refused(f"https://127.0.0.1:{server_503}")  # TLS to a plain-HTTP port
    assert "([SSL: " in line and seconds < 5


def test_a_database_store_mlflow_cannot_open_is_reported_at_once_without_its_retries(tmp_path):
    """MLflow's engine retries a database it cannot open for about 100 s, whatever the reason."""
    folder = tmp_path / "store"
    folder.mkdir()
    assert refused("sqlite:////")[0].endswith("names a folder: name the database file in it, e.g. sqlite:////mlflow.db")
    (tmp_path / "empty.db").write_bytes(b"")  # made by hand: gets the schema, its logging quiet
    assert registry.may_migrate(Settings.load(environ={"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'empty.db'}"}))
    line, seconds = refused(f"sqlite:///{folder}")
    assert line == (f"MLFLOW_TRACKING_URI sqlite:///{folder} names a folder: name the database file in it, "
                    f"e.g. sqlite:///{folder}/mlflow.db") and seconds < 5
    (tmp_path / "notes.db").write_text("not a database\n")
    line, seconds = refused(f"sqlite:///{tmp_path / 'notes.db' / 'mlflow.db'}")
    assert line == (f"MLFLOW_TRACKING_URI sqlite:///{tmp_path / 'notes.db' / 'mlflow.db'} names a path through "
                    f"{tmp_path / 'notes.db'}, a file: name a database file in a folder") and seconds < 5
    line, seconds = refused(f"sqlite:///{tmp_path / 'notes.db'}")
    assert "((sqlite3.DatabaseError) file is not a database)" in line and seconds < 5
    if importlib.util.find_spec("pymysql") is None:
        line, seconds = refused("mysql+pymysql://mlflow:pw-3 x@127.0.0.1:1/mlflow")
        assert line == ("cannot use the MLflow tracking store at mysql+pymysql://***@127.0.0.1:1/mlflow: its database "
                        "driver is not installed (No module named 'pymysql'): pip install PyMySQL into this "
                        "environment, or leave MLFLOW_TRACKING_URI empty for the embedded store") and seconds < 5


def test_a_file_store_on_a_folder_of_other_files_is_refused_before_mlflow_writes_there(tmp_path):
    """MLflow logged a traceback per folder it took for a broken experiment, and made .trash,
    models and an experiment among the user's files."""
    folder = tmp_path / "notes"
    (folder / "drafts").mkdir(parents=True)
    (folder / "todo.txt").write_text("x\n")
    line, seconds = refused(f"file://{folder}")
    assert line == (f"MLFLOW_TRACKING_URI file://{folder} names a folder holding other files (drafts, todo.txt) and "
                    "no MLflow store: name a new or empty folder, or an MLflow file store") and seconds < 5
    assert sorted(p.name for p in folder.iterdir()) == ["drafts", "todo.txt"]
    line, _ = refused(f"file://{folder / 'todo.txt'}")
    assert line.startswith(f"MLFLOW_TRACKING_URI file://{folder / 'todo.txt'} names {folder / 'todo.txt'}, which is "
                           "not a folder")
    local = tmp_path / "local"  # laid out as .local: MODEL_DIR's models folder is no MLflow registry
    (local / "models" / "lags" / "default" / "3").mkdir(parents=True)
    (local / "lost+found").mkdir()
    line, _ = refused(f"file://{local}")
    assert "names a folder holding other files (models) and no MLflow store" in line
    line, _ = refused("file:~/mlruns")
    assert line.endswith("starts with ~, which MLflow does not expand: write the home folder out, e.g. "
                         "file:///home/me/mlruns")
    store = f"file://{tmp_path / 'store'}"
    registry.require_store(Settings.load(environ={"MLFLOW_TRACKING_URI": store}))  # a new folder: MLflow makes it
    registry.require_store(Settings.load(environ={"MLFLOW_TRACKING_URI": store}))  # and takes it again


def test_the_stores_password_is_never_shown(server_503):
    uri = f"http://finstream:s3cret-pw@127.0.0.1:{server_503}/mlflow"
    line, _ = refused(uri)
    assert "s3cret-pw" not in line and f"http://***@127.0.0.1:{server_503}/mlflow" in line
    settings = Settings.load(environ={"MLFLOW_TRACKING_URI": "postgresql://mlflow:pw-9@db/mlflow"})
    assert registry.shown_uri(settings) == "postgresql://***@db/mlflow"


def test_commands_started_at_once_on_a_new_embedded_store_all_open_it(tmp_path):
    """Without the lock, two of three such processes failed, and the store could stay
    half-made for good ("table _alembic_tmp_tags already exists")."""
    uri = f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}"
    opener = ("from finstream.core.config import Settings; from finstream.stores import registry; "
              f"registry.require_store(Settings.load(environ={{'MLFLOW_TRACKING_URI': {uri!r}}}))")
    processes = [subprocess.Popen([sys.executable, "-c", opener], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  text=True, cwd=tmp_path) for _ in range(3)]
    outputs = [p.communicate(timeout=120)[0] for p in processes]
    assert [p.returncode for p in processes] == [0, 0, 0], outputs
    assert not (tmp_path / "mlruns").exists()  # MLflow's default artifact root, unused here
    client = registry.client(Settings.load(environ={"MLFLOW_TRACKING_URI": uri}))
    assert sorted(e.name for e in client.search_experiments()) == ["Default", registry.EXPERIMENT]
    # A command on the existing store says what it was asked, not alembic's set-up at INFO.
    listing = subprocess.run([sys.executable, "-m", "finstream.models", "list", "--questions", "lags"],
                             capture_output=True, text=True, timeout=120,
                             env={**os.environ, "MLFLOW_TRACKING_URI": uri})
    assert (listing.returncode, listing.stderr) == (0, ""), listing.stderr
    assert listing.stdout.startswith("lags: no version registered") and listing.stdout.count("\n") == 1


def test_an_experiment_made_by_another_command_since_the_lookup_is_used(tmp_path):
    settings = Settings.load(environ={"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"})
    client = registry.client(settings)
    made = registry.experiment_id(client, settings)

    class LateLookup:  # its first lookup ran before the other command created the experiment
        lookups = 0

        def get_experiment_by_name(self, name):
            self.lookups += 1
            return None if self.lookups == 1 else client.get_experiment_by_name(name)

        def create_experiment(self, *args, **kwargs):
            return client.create_experiment(*args, **kwargs)

    assert registry.experiment_id(LateLookup(), settings) == made


def test_two_stream_jobs_installing_one_version_at_once_never_show_a_reader_half_a_file(tmp_path):
    """Two stream jobs may share MODEL_DIR (the default, .local/models): each mirror installs
    the champion. Each file appears whole, and no temporary file is left."""
    from finstream.serving import installed

    series = {"timespan": "day", "multiplier": 1, "asset_class": "stocks"}
    metadata = {"series": series, "registered_model": "finstream-lags-day1-stocks", "notes": "x" * 200_000}
    scorer = {"question": "lags", "served": "persistence"}
    installed.install(tmp_path, "lags", "1", scorer, metadata)
    errors, stop = [], threading.Event()

    def reader():
        while not stop.is_set():
            try:
                assert installed.installed_version(tmp_path, "lags", "day1-stocks") == "1"
                read = installed.installed_metadata(tmp_path, "lags", "finstream-lags-day1-stocks/1")
                assert read["notes"] == metadata["notes"]
                installed.load_served(tmp_path, "lags", "day1-stocks", "1")
            except Exception as exc:  # noqa: BLE001 - any failure is the finding
                errors.append(repr(exc)[:200])

    def installer():
        for _ in range(30):
            installed.install(tmp_path, "lags", "1", scorer, metadata)

    threads = [threading.Thread(target=reader), *(threading.Thread(target=installer) for _ in range(3))]
    for thread in threads:
        thread.start()
    for thread in threads[1:]:
        thread.join(60)
    stop.set()
    threads[0].join(10)
    assert errors == []
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]


def test_a_store_this_user_may_only_read_opens_without_its_lock(tmp_path, monkeypatch):
    """Where the lock file cannot be made (the folder is another user's), an existing store
    still opens: there is nothing to create."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}?mode=ro"
    settings = Settings.load(environ={"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"})
    registry.require_store(settings)  # made, with its lock file
    (tmp_path / "mlflow.db.lock").unlink()
    real_open = os.open

    def refused(path, flags, *args):
        if str(path).endswith(".lock"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", refused)
    assert registry.sqlite_path(uri) == tmp_path / "mlflow.db"
    assert registry.client(Settings.load(environ={"MLFLOW_TRACKING_URI": uri})).search_registered_models() == []
    (tmp_path / "mlflow.db").unlink()  # a new store there cannot be made: the line names the lock file
    line = str(pytest.raises(UserError, registry.require_store, settings).value)
    assert f"([Errno 13] Permission denied: {tmp_path / 'mlflow.db.lock'})" in line


def test_a_lock_held_too_long_is_one_line(tmp_path, monkeypatch):
    import fcntl

    settings = Settings.load(environ={"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"})
    monkeypatch.setattr(registry, "LOCK_SECONDS", 0.5)
    with open(tmp_path / "mlflow.db.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # another process, stalled while it opens the store
        line = str(pytest.raises(UserError, registry.require_store, settings).value)
    assert f"another process has held {tmp_path / 'mlflow.db.lock'} for 0.5 s while opening the store: stop it" in line


def test_installed_files_have_the_usual_mode_and_a_failed_write_leaves_nothing(tmp_path, monkeypatch):
    from finstream.serving import installed

    metadata = {"series": {"timespan": "day", "multiplier": 1}, "registered_model": "finstream-lags-day1"}
    installed.install(tmp_path, "lags", "1", {"question": "lags", "served": "persistence"}, metadata)
    umask = os.umask(0)
    os.umask(umask)
    for name in (installed.SCORER, installed.METADATA):
        assert (tmp_path / "lags" / "day1" / "1" / name).stat().st_mode & 0o777 == 0o666 & ~umask
    monkeypatch.setattr(os, "fsync", lambda fd: (_ for _ in ()).throw(OSError(27, "File too large")))
    with pytest.raises(OSError, match="File too large"):
        installed.install(tmp_path, "lags", "2", {"question": "lags", "served": "persistence"}, metadata)
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]


def test_promote_refuses_a_version_that_is_not_a_number(capsys):
    from finstream import models

    assert models.parse_args(["promote", "--question", "lags", "--set", "day1", "--version", "3"]).version == 3
    with pytest.raises(SystemExit) as exited:
        models.parse_args(["promote", "--question", "lags", "--set", "day1", "--version", "abc"])
    assert exited.value.code == 2
    assert capsys.readouterr().err.startswith("error: argument --version: ")


def test_the_ui_gets_the_stores_uri_from_the_environment_not_its_command_line():
    """`ps` shows every process's command line to every user of the machine."""
    from finstream import models

    settings = Settings.load(environ={"MLFLOW_TRACKING_URI": "postgresql://mlflow:pw-9@db/mlflow"})
    command, environment = models.ui_command(settings, 5001)
    assert command[1:] == ["ui", "--host", "127.0.0.1", "--port", "5001"] and not any("pw-9" in a for a in command)
    assert environment["MLFLOW_BACKEND_STORE_URI"] == "postgresql://mlflow:pw-9@db/mlflow"


def test_the_ui_on_a_port_in_use_is_one_line_naming_the_flag():
    from finstream import models

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        number = taken.getsockname()[1]
        with pytest.raises(UserError, match=f"cannot listen on 127.0.0.1:{number} .*pass --port with a free port"):
            models.require_free_port(number)
    models.require_free_port(number)  # free again


def test_a_relative_sqlite_store_keeps_its_artifacts_beside_it(tmp_path, monkeypatch):
    """MLflow's tutorials' form, sqlite:///mlflow.db: relative to the working folder."""
    monkeypatch.chdir(tmp_path)
    settings = Settings.load(environ={"MLFLOW_TRACKING_URI": "sqlite:///mlflow.db"})
    assert registry.artifact_location(settings) == (tmp_path / "artifacts").as_uri()
