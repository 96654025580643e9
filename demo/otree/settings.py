"""The demo oTree project mastok drives in `make dev` and in the tests.

Two session configs: `survey` (one player, one question) and `guess_two` (two players guess a
number, wait for each other, and see both guesses). Secrets come from the environment, set by
`mastok.otree.local.LocalOTree`.
"""

from os import environ

SESSION_CONFIGS = [
    dict(
        name="survey",
        display_name="Survey (one player)",
        app_sequence=["survey"],
        num_demo_participants=1,
        doc="One page asking the participant's age, then a results page.",
    ),
    dict(
        name="guess_two",
        display_name="Guess a number (two players)",
        app_sequence=["guess"],
        num_demo_participants=2,
        doc="Two players each guess a number from 0 to 100, then see both guesses.",
    ),
]

SESSION_CONFIG_DEFAULTS = dict(
    real_world_currency_per_point=1.00,
    participation_fee=0.00,
    doc="",
)

PARTICIPANT_FIELDS = []
SESSION_FIELDS = []

LANGUAGE_CODE = "en"
REAL_WORLD_CURRENCY_CODE = "USD"
USE_POINTS = True

ADMIN_USERNAME = "admin"
ADMIN_PASSWORD = environ.get("OTREE_ADMIN_PASSWORD")
# The REST key is read by oTree itself from the environment variable OTREE_REST_KEY, and is
# only checked when OTREE_AUTH_LEVEL is STUDY or DEMO.

DEMO_PAGE_INTRO_HTML = """
<p>Demo experiments for mastok: a one-player survey and a two-player guessing game.</p>
"""

# A fixed key is fine for a local demo; never reuse it for a real study.
SECRET_KEY = "mastok-demo-otree-not-secret"
