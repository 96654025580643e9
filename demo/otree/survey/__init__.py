from otree.api import BaseConstants, BaseGroup, BasePlayer, BaseSubsession, Page, models

doc = """
One player, one question (age), then a results page.
"""


class C(BaseConstants):
    NAME_IN_URL = "survey"
    PLAYERS_PER_GROUP = None
    NUM_ROUNDS = 1


class Subsession(BaseSubsession):
    pass


class Group(BaseGroup):
    pass


class Player(BasePlayer):
    age = models.IntegerField(label="What is your age?", min=13, max=125)


# PAGES
class Demographics(Page):
    form_model = "player"
    form_fields = ["age"]


class Results(Page):
    pass


page_sequence = [Demographics, Results]
