from otree.api import BaseConstants, BaseGroup, BasePlayer, BaseSubsession, Page, WaitPage, models

doc = """
Two players each guess a number from 0 to 100, wait for each other, then see both guesses.
"""


class C(BaseConstants):
    NAME_IN_URL = "guess"
    PLAYERS_PER_GROUP = 2
    NUM_ROUNDS = 1


class Subsession(BaseSubsession):
    pass


class Group(BaseGroup):
    pass


class Player(BasePlayer):
    guess = models.IntegerField(label="Guess a number from 0 to 100:", min=0, max=100)


# PAGES
class Guess(Page):
    form_model = "player"
    form_fields = ["guess"]


class ResultsWaitPage(WaitPage):
    body_text = "Waiting for the other player to guess."


class Results(Page):
    @staticmethod
    def vars_for_template(player: Player):
        return dict(other=player.get_others_in_group()[0])


page_sequence = [Guess, ResultsWaitPage, Results]
