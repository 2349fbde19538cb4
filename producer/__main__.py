import sys

from finstream.core.errors import exit_on_user_error
from producer.cli import main

sys.exit(exit_on_user_error(main))
