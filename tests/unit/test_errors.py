"""The one-line errors: list flags parsed and checked, a UserError turned into one line and exit 2."""

from __future__ import annotations

import argparse
import os

import pytest

from finstream.core.errors import (
    ArgumentParser,
    HelpFormatter,
    UserError,
    choice_list,
    comma_list,
    exit_on_user_error,
    positive,
    positive_int,
    ticker_list,
)


def test_ticker_lists_are_split_trimmed_and_checked():
    assert ticker_list(" AAPL, X:BTCUSD ,C:EURUSD,") == ("AAPL", "X:BTCUSD", "C:EURUSD")
    for bad, why in (("", "at least one"), (" , ", "at least one"), ("aapl", "not a ticker: aapl"),
                     ("AAPL,BAD TICKER", "not a ticker: BAD TICKER")):
        with pytest.raises(argparse.ArgumentTypeError, match=why):
            ticker_list(bad)


def test_choice_lists_name_the_choices():
    parse = choice_list(("lags", "range"))
    assert parse("lags,range") == ("lags", "range")
    with pytest.raises(argparse.ArgumentTypeError, match="unknown: lag; choose from lags,range"):
        parse("lag")
    with pytest.raises(argparse.ArgumentTypeError, match="give at least one name"):
        parse(",")


def test_a_bad_flag_is_one_line_and_exit_2(capsys):
    parser = ArgumentParser(prog="tool")
    parser.add_argument("--tickers", type=ticker_list)
    with pytest.raises(SystemExit) as stop:
        parser.parse_args(["--tickers", "aapl"])
    assert stop.value.code == 2
    assert capsys.readouterr().err == "error: argument --tickers: not a ticker: aapl (upper-case, e.g. AAPL, " \
                                      "C:EURUSD) (see tool --help)\n"


def test_a_user_error_is_one_line_and_exit_2(capsys):
    def main():
        raise UserError("cannot reach Kafka at x: start it")
    assert exit_on_user_error(main) == 2
    assert capsys.readouterr().err == "error: cannot reach Kafka at x: start it\n"
    assert exit_on_user_error(lambda: None) == 0
    assert exit_on_user_error(lambda: 1) == 1  # a main's own exit code stands


def test_help_shows_each_default_once_and_none_where_there_is_none():
    parser = ArgumentParser(prog="bench", description="Line one.\n  kept as written", formatter_class=HelpFormatter)
    parser.add_argument("--seconds", type=float, default=30, help="seconds of feed")
    parser.add_argument("--lag", type=float, default=0.0, help="seconds to wait")
    parser.add_argument("--rates", type=comma_list(float), default="10,100", help="bars per second")
    parser.add_argument("--out", help="the file (default: next to the others)")
    parser.add_argument("--keep", action="store_true", help="keep the folders")
    parser.add_argument("--refresh", default="", help="refresh interval")
    text = " ".join(parser.format_help().split())
    assert "Line one.\n  kept as written" in parser.format_help()
    assert "seconds of feed (default: 30)" in text and "seconds to wait (default: 0.0)" in text
    assert "bars per second (default: 10,100)" in text
    assert text.count("(default:") == 4  # not after --keep, --refresh, nor a second one after --out
    assert parser.parse_args([]).rates == (10.0, 100.0)  # a string default goes through the type


@pytest.mark.parametrize("text", ["0", "-5", "nan", "inf", "abc", ""])
def test_positive_refuses_what_is_not_a_finite_number_above_zero(text):
    with pytest.raises(ValueError):
        positive(text)


def test_positive_lists_and_whole_numbers():
    assert comma_list(positive)("10,0.5") == (10.0, 0.5) and positive_int("3") == 3
    for text in ("0", "1.5", "inf"):
        with pytest.raises(ValueError):
            positive_int(text)


def test_numbers_refused_with_their_reason():
    from finstream.core.errors import fraction, non_negative, non_negative_int, positive, positive_int
    for parse, text, reason in ((positive, "abc", "abc is not a number above 0"),
                                (positive, "inf", "inf is not a number above 0"),
                                (positive_int, "1.5", "1.5 is not a whole number above 0"),
                                (non_negative_int, "-1", "-1 is not a whole number, 0 or more"),
                                (non_negative_int, "x", "x is not a whole number, 0 or more"),
                                (non_negative, "-0.5", "-0.5 is not a number, 0 or more"),
                                (non_negative, "nan", "nan is not a number, 0 or more"),
                                (fraction, "1", "1 is not a number between 0 and 1"),
                                (fraction, "0", "0 is not a number between 0 and 1"),
                                (fraction, "nan", "nan is not a number between 0 and 1")):
        with pytest.raises(argparse.ArgumentTypeError, match=reason):
            parse(text)
    assert (positive("0.5"), positive_int("3"), non_negative_int("0"), non_negative_int("7")) == (0.5, 3, 0, 7)
    assert (non_negative("0"), non_negative("15"), fraction("0.2")) == (0.0, 15.0, 0.2)


@pytest.mark.parametrize(("text", "shown"), [
    ("http://u:pw@h:5000/x", "http://***@h:5000/x"),
    ("https://TOKEN123@host/a", "https://***@host/a"),  # a token as the user
    ("http://u:p@ss@host/x", "http://***@host/x"),  # a password holding @
    ("http://bob:p,w@127.0.0.1:1", "http://***@127.0.0.1:1"),  # and RFC 3986's sub-delimiters
    ("s3a://AKIA:se(c)r'et@bucket/ck", "s3a://***@bucket/ck"),
    ("postgresql://u@db/mlflow?password=sekret&x=1", "postgresql://***@db/mlflow?password=***&x=1"),
    ("https://h/api?token=abc#frag", "https://h/api?token=***#frag"),
    ("https://idp/t?client_id=app&client_secret=cs-1&refresh_token=rt-2", "https://idp/t?client_id=app"
     "&client_secret=***&refresh_token=***"),
    ("https://b.s3.amazonaws.com/k?X-Amz-Credential=AKIA&X-Amz-Security-Token=st-3&X-Amz-Signature=9f",
     "https://b.s3.amazonaws.com/k?X-Amz-Credential=AKIA&X-Amz-Security-Token=***&X-Amz-Signature=***"),
    ("https://a.blob.core.windows.net/c?sv=2022&sig=abc%2Bd", "https://a.blob.core.windows.net/c?sv=2022&sig=***"),
    ("mongodb://h/db?auth=s3", "mongodb://h/db?auth=***"),
    ("API request to http://finstream:S3cr3t@127.0.0.1:15987/api failed", "API request to "
     "http://***@127.0.0.1:15987/api failed"),
    ("sqlite:////tmp/m.db and a@b and http://h:5000/x?q=1", "sqlite:////tmp/m.db and a@b and http://h:5000/x?q=1"),
    # Parameters whose names hold a secret's word; a database password SQLAlchemy takes unencoded.
    ("postgresql://u@h/db?sslpassword=k-1&sslmode=require", "postgresql://***@h/db?sslpassword=***&sslmode=require"),
    ("s3://b?secret_key=sk-2&region=eu&apiKey=k3", "s3://b?secret_key=***&region=eu&apiKey=***"),
    ("postgresql+psycopg2://mlflow:S3 cr/e#t?\"x@db:5432/mlflow", "postgresql+psycopg2://***@db:5432/mlflow"),
    ("could not reach mysql://root:p w@127.0.0.1/m: refused", "could not reach mysql://***@127.0.0.1/m: refused"),
    ("https://h/cb#access_token=at-4&state=s", "https://h/cb#access_token=***&state=s"),
    ("https://h/k?password=a'b\"c&x=1 and ?Signature=v2-5&X-Goog-Signature=g-6",
     "https://h/k?password=***&x=1 and ?Signature=***&X-Goog-Signature=***"),
    ("mssql+pyodbc:///?odbc_connect=DRIVER%3Dx%3BUID%3Du%3BPWD%3Ds-7%3BDATABASE%3Dm",
     "mssql+pyodbc:///?odbc_connect=DRIVER%3Dx%3BUID%3Du%3BPWD%3D***%3BDATABASE%3Dm"),
    # Not secrets: a port before a later @, a key file's path, words that end in key or hold no secret.
    ("at postgresql://pg.internal:5432/mlflow?user=svc@tenant1", "at postgresql://pg.internal:5432/mlflow?user=svc@tenant1"),
    ("mysql://db:3306/m: Access denied for user 'u'@'host'", "mysql://db:3306/m: Access denied for user 'u'@'host'"),
    ("postgresql://db.internal:5432/m (could not translate host name): ask dba@corp.com",
     "postgresql://db.internal:5432/m (could not translate host name): ask dba@corp.com"),
    ("mysql://h/m?ssl_key=/etc/k.pem&keyword=x&monkey=y&key_id=z", "mysql://h/m?ssl_key=/etc/k.pem&keyword=x"
     "&monkey=y&key_id=z"),
    ("https://h/_search?sort_key=ts&tokenizer=standard&passwordless=true&token_type=bearer&public_key=pk&key_id=2",
     "https://h/_search?sort_key=ts&tokenizer=standard&passwordless=true&token_type=bearer&public_key=pk&key_id=2"),
    # A word's end in camel case; keys of a secret kind, whatever their spelling.
    ("https://sts/?SecretAccessKey=s-1&tokenValue=t-2&AWSSecretKey=s-3&private_key_passphrase=p-4&code=c-5",
     "https://sts/?SecretAccessKey=***&tokenValue=***&AWSSecretKey=***&private_key_passphrase=***&code=***"),
    ("Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=root;SharedAccessKey=k-6;EntityPath=q",
     "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=root;SharedAccessKey=***;EntityPath=q"),
    ("https://dd/api?application_key=k-7&x-functions-key=k-8&x-amz-server-side-encryption-customer-key=k-9",
     "https://dd/api?application_key=***&x-functions-key=***&x-amz-server-side-encryption-customer-key=***"),
    ("https://maps/api?key=AIza-1&x-api-key=k-2&Ocp-Apim-Subscription-Key=k-3&private_key=k-4&api-key=k-5",
     "https://maps/api?key=***&x-api-key=***&Ocp-Apim-Subscription-Key=***&private_key=***&api-key=***"),
    # Not user information: an @ after the authority's end, or past text around a URL.
    ("http://host:5000?owner=a@b.com", "http://host:5000?owner=a@b.com"),
    ("see <http://host:5000>,<ops@corp.com>", "see <http://host:5000>,<ops@corp.com>"),
])
def test_credentials_in_urls_are_hidden(text, shown):
    from finstream.core.errors import hide_credentials

    assert hide_credentials(text) == shown


def test_a_configured_password_no_pattern_can_bound_is_hidden_verbatim(monkeypatch):
    """An @, a space or a quote in a database URL's password (SQLAlchemy takes them unencoded),
    and the secrets themselves, once the settings that hold them have loaded."""
    from finstream.core import errors
    from finstream.core.config import Settings
    from finstream.core.errors import hide_credentials

    # What this test's settings remember stays in this test (process-wide otherwise).
    monkeypatch.setattr(errors, "_REMEMBERED_USERINFO", list(errors._REMEMBERED_USERINFO))
    monkeypatch.setattr(errors, "_REMEMBERED_WORDS", set(errors._REMEMBERED_WORDS))
    monkeypatch.setattr(errors, "_WORDS", errors._WORDS)

    uri = "postgresql://bob:p@ss w'0rd-48@db.example:5432/mlflow"
    Settings.load(environ={"MLFLOW_TRACKING_URI": uri, "POLYGON_API_KEY": "k-48-secret-xyz",
                           "POLYGON_BASE_URL": "https://ops@k48"})
    shown = hide_credentials(f"cannot open {uri}: refused")
    assert shown == "cannot open postgresql://***@db.example:5432/mlflow: refused"
    assert hide_credentials("key k-48-secret-xyz refused") == "key *** refused"
    assert hide_credentials("ops and k48") == "ops and k48"  # a bare user is no credential
    Settings.load(environ={"MLFLOW_TRACKING_URI": "http://bob:p%40ss-w0rd49@h49:1/x", "ES_PASSWORD": "elastic",
                           "CHECKPOINT_DIR": "/srv/finstream@prod/ck"})
    assert hide_credentials("login p@ss-w0rd49 refused") == "login *** refused"  # decoded, as a driver may say it
    # Not credentials: a path's @, a secret inside a longer name, a user's empty password.
    kept = "/srv/finstream@prod/ck and elastic_transport"
    assert hide_credentials(kept) == kept
    Settings.load(environ={"MLFLOW_TRACKING_URI": "http://http:@mlflow.corp49:5000"})
    assert hide_credentials("cannot reach http://mlflow.corp49:5000") == "cannot reach http://mlflow.corp49:5000"


def test_an_error_line_never_shows_a_urls_password(capsys):
    """Every entry point's one-line error (a UserError, argparse's refusal, the producer's API
    failure) goes through print_error."""
    from finstream.core.errors import ArgumentParser, UserError, exit_on_user_error, print_error

    def fails():
        raise UserError("cannot reach http://u:pw-8@h:1/x")

    assert exit_on_user_error(fails) == 2
    print_error(RuntimeError("https://u:pw-8@h/v2/aggs: HTTP 503"))
    with pytest.raises(SystemExit):
        ArgumentParser(prog="p").error("argument --url: bad value 'http://u:pw-8@h'")
    assert capsys.readouterr().err.splitlines() == [
        "error: cannot reach http://***@h:1/x", "error: https://***@h/v2/aggs: HTTP 503",
        "error: argument --url: bad value 'http://***@h' (see p --help)"]


def test_mlflows_log_lines_and_a_threads_traceback_hide_a_urls_password():
    """MLflow logs through a handler of its own unless told not to; a thread's uncaught error
    is printed by threading.excepthook, not sys.excepthook."""
    import subprocess
    import sys

    program = ("from finstream.core.logs import setup_logging; import logging, threading; setup_logging(); "
               "import mlflow; logging.getLogger('mlflow.store').warning('retrying http://u:pw-5@h/api'); "
               "t = threading.Thread(target=lambda: (_ for _ in ()).throw(RuntimeError('http://u:pw-5@h/t')), "
               "name='follower'); t.start(); t.join()")
    env = {key: value for key, value in os.environ.items() if key != "MLFLOW_CONFIGURE_LOGGING"}
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0 and "pw-5" not in result.stdout + result.stderr, result.stderr
    assert "mlflow.store: retrying http://***@h/api" in result.stderr
    assert "Exception in thread follower:" in result.stderr and "RuntimeError: http://***@h/t" in result.stderr


def test_no_log_line_or_traceback_shows_a_urls_password():
    """MLflow's errors repeat the tracking URI it used, password and all."""
    import subprocess
    import sys

    program = ("from finstream.core.logs import setup_logging; import logging; setup_logging(); "
               "logging.getLogger('x').warning('at %s', 'http://u:pw-7@h/x'); "
               "logging.getLogger('x').exception('failed', exc_info=RuntimeError('http://u:pw-7@h/y')); "
               "logging.getLogger('x').info('bad %d', 'x'); "  # a bad format call: reported, not raised
               "raise RuntimeError('API request to http://u:pw-7@h/z failed')")
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "pw-7" not in result.stdout + result.stderr
    assert "at http://***@h/x" in result.stderr and "RuntimeError: http://***@h/y" in result.stderr
    assert "RuntimeError: API request to http://***@h/z failed" in result.stderr
    assert "--- Logging error ---" in result.stderr


def test_a_folder_a_job_writes_that_cannot_be_made_is_one_line_before_any_work(tmp_path, monkeypatch):
    """--report-dir (checked before the training, not after it), MODEL_DIR and CHECKPOINT_DIR
    share one check: what stands in the way is named."""
    from finstream.core.errors import UserError, require_folder
    from finstream.training import steps

    monkeypatch.setenv("FINSTREAM_LOCAL", str(tmp_path))
    (tmp_path / "taken").write_text("")
    with pytest.raises(UserError) as refused:
        steps.report_dir("run-1", "taken/reports")
    taken = tmp_path / "taken"
    assert str(refused.value) == (f"cannot write training reports to {taken / 'reports'} ({taken} is a file, not a "
                                  "folder): give --report-dir a folder this user can write")
    assert steps.report_dir("run-2", None) == tmp_path / "reports" / "run-2"
    assert [p.name for p in (tmp_path / "reports" / "run-2").iterdir()] == []  # its probe file gone
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    with pytest.raises(UserError, match=r"\(.*loop is a symbolic link that loops\): set CHECK"):
        require_folder(tmp_path / "loop" / "a" / "b", "checkpoints", "set CHECKPOINT_DIR to a folder")
    (tmp_path / "link").symlink_to(tmp_path / "gone")
    with pytest.raises(UserError, match=r"\(.*link is a symbolic link to .*gone, which does not exist\): set MODEL"):
        require_folder(tmp_path / "link" / "models", "models", "set MODEL_DIR to a writable folder")
