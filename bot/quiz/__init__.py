"""Platform-neutral quizzes: a question bank, open quizzes with timers, the flow, case of the day.

item.py (QuizItem, the multiple-choice item `huatuo-bot eval` reads too), extract.py (which option
a response chose), bank.py (QuestionBank), session.py (Quiz, Tally, Reveal, RevealRefused),
explanation.py (the model's own answer, generated in the background), registry.py (Quizzes: the
open quizzes of the process), flow.py (QuizFlow: the quiz over a platform's QuizSurface),
texts.py (what learners read, Markdown), schedule.py (case of the day). An adapter that can post
a quiz exposes `async def post_quiz(self, channel: str) -> None`, which the case-of-the-day
scheduler calls. Imports neither slack_bolt nor discord.
"""
