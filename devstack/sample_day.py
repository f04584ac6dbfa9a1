"""A realistic sample exam day, written exactly as docs/file-contract.md describes.

    python -m devstack.sample_day --out DIR --day 2026-11-23 [--institutions a,b] [--seed 7] [--submissions 300]

For each institution, `generate_day` writes under `DIR/incoming/<institution>/<YYYY-MM-DD>/`:

- `exams/<exam_id>.json`: 2–3 exams (biology, history, physics, chemistry, economics, earth science) with
  multiple choice (one multi-answer key each), true/false, numeric (with a tolerance), short answer and essay
  questions; every free-text question has a rubric and a reference answer of 1–3 sentences (two short-answer
  questions have rubric items `{id, description, points}` with a deduction, docs/file-contract.md);
- `submissions/upload-NN.{csv,jsonl,parquet}`: one row per answer, split over five files in the three
  formats, `submitted_at` in the institution's local time (08:00–17:59) with its UTC offset;
- about 1% deliberately bad rows (missing student_id, unknown question_id, unknown exam_id, unparseable
  submitted_at, one answer over 20,000 characters), each with exactly one defect;
- one file sent twice: the same bytes again as `upload-NN.resend.<ext>` (it sorts after its original).

Answers are varied: right and wrong letters, numbers near and far from the key, free text from full to
partial to off-topic to empty, and several students giving the very same short answer. Everything comes
from `random.Random` seeded by (seed, institution, day), so a seed always gives the same bytes.

`upload_day` puts the files into S3 in arrival order: exam definitions first, then submissions by name,
the re-sent file last. This is a dev tool: it does not import `gradeflow`.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import math
import random
import shutil
import sys
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pyarrow as pa
import pyarrow.parquet as pq
import yaml

INSTITUTIONS_YAML = Path(__file__).resolve().parents[1] / "include" / "institutions.yaml"
COLUMNS = ("submission_id", "student_id", "exam_id", "question_id", "answer", "submitted_at")
MAX_ANSWER_CHARS = 20_000
FILE_FORMATS = ("csv", "jsonl", "parquet", "csv", "jsonl")
RESEND_MARK = ".resend"
DAY_START = time(8, 0)
DAY_LAST_SECOND = 10 * 3600 - 1  # 17:59:59 local, counted from 08:00
SITTING_HOURS = (8, 9, 10, 11, 13, 14, 15)
BAD_ROW_SHARE = 0.01
# Defects, named by the submission column the pipeline rejects the row on.
DEFECTS = ("student_id", "question_id", "exam_id", "submitted_at", "answer")


# ---------------------------------------------------------------- the question bank

@dataclass(frozen=True)
class Question:
    """One question: its contract fields plus what the generator needs to invent answers."""

    spec: dict
    concepts: tuple[str, ...] = ()  # free text: one student-style sentence per rubric point
    common: str = ""  # short answer: the answer many students give word for word
    wrong: tuple[str, ...] = ()  # free text: misconceptions
    mistakes: tuple[float, ...] = ()  # numeric: typical wrong results
    unit: str = ""  # numeric: the unit students like to add
    topic: str = ""  # essay: what it is about, for openers and conclusions

    @property
    def qtype(self) -> str:
        """The contract type of the question."""
        return self.spec["type"]


@dataclass(frozen=True)
class Exam:
    """An exam template: id, title and questions (numbered q1, q2, … in this order)."""

    exam_id: str
    title: str
    questions: tuple[Question, ...]

    def definition(self) -> dict:
        """The exam definition document, exactly the contract's fields."""
        questions = [{"question_id": f"q{n}", **q.spec} for n, q in enumerate(self.questions, start=1)]
        return {"exam_id": self.exam_id, "title": self.title, "questions": questions}

    def question_ids(self) -> list[str]:
        """q1 … qN."""
        return [f"q{n}" for n in range(1, len(self.questions) + 1)]


def _mc(prompt: str, choices: tuple[str, ...], key: str | list[str], points: int = 1) -> Question:
    """A multiple-choice question; the choices are listed in the prompt, options are the letters."""
    letters = [chr(ord("A") + i) for i in range(len(choices))]
    listed = " ".join(f"{letter}) {text}" for letter, text in zip(letters, choices, strict=True))
    if isinstance(key, list):
        prompt = f"{prompt} Select all that apply."
    spec = {"type": "multiple_choice", "max_points": points, "prompt": f"{prompt} {listed}",
            "options": letters, "answer_key": key}
    return Question(spec)


def _tf(prompt: str, key: bool) -> Question:
    """A true/false statement."""
    return Question({"type": "true_false", "max_points": 1, "prompt": f"True or false: {prompt}", "answer_key": key})


def _num(prompt: str, key: float, tolerance: float, unit: str, mistakes: tuple[float, ...],
         points: int = 2) -> Question:
    """A numeric question with an absolute tolerance and the typical wrong results."""
    spec = {"type": "numeric", "max_points": points, "prompt": prompt, "answer_key": key, "tolerance": tolerance}
    return Question(spec, mistakes=mistakes, unit=unit)


def _short(prompt: str, rubric: str | list[dict], reference: str, concepts: tuple[str, ...], common: str,
           wrong: tuple[str, ...], points: int = 3) -> Question:
    """A short-answer question graded by the model; `rubric` is text or a list of rubric items."""
    spec = {"type": "short_answer", "max_points": points, "prompt": prompt, "rubric": rubric,
            "reference_answer": reference}
    return Question(spec, concepts=concepts, common=common, wrong=wrong)


def _essay(prompt: str, rubric: str, reference: str, concepts: tuple[str, ...], wrong: tuple[str, ...],
           topic: str, points: int = 10) -> Question:
    """An essay question graded by the model."""
    spec = {"type": "essay", "max_points": points, "prompt": prompt, "rubric": rubric, "reference_answer": reference}
    return Question(spec, concepts=concepts, wrong=wrong, topic=topic)


BIOLOGY = Exam("bio-101-midterm", "Biology 101: cell biology and evolution midterm", (
    _mc("Which organelle produces most of the ATP in a eukaryotic cell?",
        ("Nucleus", "Mitochondrion", "Ribosome", "Golgi apparatus"), "B"),
    _mc("Which structures are found in plant cells but not in animal cells?",
        ("Cell wall", "Mitochondria", "Chloroplasts", "Ribosomes"), ["A", "C"], points=2),
    _tf("DNA in human cells is single-stranded.", False),
    _num("How many chromosomes does a typical human somatic cell contain?", 46, 0, "chromosomes", (23, 44, 48)),
    _num("What is the resting membrane potential of a typical neuron, in millivolts? Answers within 5 mV "
         "are accepted.", -70, 5, "mV", (70, -90, 0.07)),
    _short("What is the function of the mitochondrion?",
           [{"id": "atp", "description": "States that it makes ATP", "points": 1},
            {"id": "respiration", "description": "Names cellular respiration as the process", "points": 1},
            {"id": "energy", "description": "Says it gives the cell its energy", "points": 1},
            {"id": "nucleus", "description": "Confuses it with the nucleus: genetic information", "points": -1}],
           "The mitochondrion produces ATP through cellular respiration. It supplies most of the chemical energy "
           "the cell needs.",
           ("It makes ATP.", "This happens by cellular respiration.", "It gives the cell the energy it needs."),
           "It is the powerhouse of the cell.",
           ("It controls what enters and leaves the cell.", "It stores the genetic information of the cell.",
            "It makes proteins for the cell.")),
    _short("Explain the difference between mitosis and meiosis.",
           "3 points: mitosis gives two identical diploid cells (1), meiosis gives four different haploid "
           "cells (1), purposes: growth/repair versus sexual reproduction (1).",
           "Mitosis produces two genetically identical diploid cells for growth and repair. Meiosis produces "
           "four genetically different haploid gametes for sexual reproduction.",
           ("Mitosis makes two identical cells with the full set of chromosomes.",
            "Meiosis makes four cells that are genetically different and have half the chromosomes.",
            "Mitosis is for growth and repair, meiosis is for making gametes."),
           "Mitosis makes body cells and meiosis makes sex cells.",
           ("Mitosis happens in plants and meiosis happens in animals.",
            "They are the same process but meiosis is faster.")),
    _essay("Describe how natural selection can lead to the evolution of a population.",
           "10 points: heritable variation (2), differential survival and reproduction (3), change in allele "
           "frequencies over generations (3), clear structure and correct terms (2).",
           "Individuals in a population vary in heritable traits, and some variants survive and reproduce more "
           "successfully in their environment. Over many generations the favourable alleles become more "
           "common, so the characteristics of the population change.",
           ("Individuals in a population are different from each other, and these differences can be inherited.",
            "Some individuals are better adapted, so they survive and reproduce more than others.",
            "They pass their favourable alleles on to their offspring.",
            "Over many generations these alleles become more common in the population.",
            "So the characteristics of the whole population change over time, which is evolution."),
           ("Animals change their bodies during their lives because they need to, and then pass these changes "
            "on to their children.", "Evolution happens when an individual animal turns into a new species."),
           "natural selection"),
))

HISTORY = Exam("hist-210-final", "Modern European history: final exam", (
    _mc("In which year did the Berlin Wall fall?", ("1961", "1979", "1989", "1991"), "C"),
    _mc("Which countries were founding members of the European Coal and Steel Community in 1951?",
        ("Italy", "United Kingdom", "Spain", "Belgium"), ["A", "D"], points=2),
    _tf("The Treaty of Versailles was signed after the Second World War.", False),
    _num("In which year did the French Revolution begin with the storming of the Bastille?", 1789, 0, "",
         (1798, 1776, 1815)),
    _num("Around which year did the Industrial Revolution begin in Britain? Answers within 10 years of the "
         "accepted date are correct.", 1760, 10, "", (1850, 1900, 1700)),
    _short("What were the main causes of the First World War?",
           "3 points: long-term causes (militarism, alliances, imperialism, nationalism) for up to 2 points, "
           "the assassination of Franz Ferdinand as the trigger for 1 point.",
           "Militarism, the alliance system, imperialism and nationalism raised tensions among the European "
           "powers. The assassination of Archduke Franz Ferdinand in 1914 triggered the war.",
           ("Militarism and the arms race between the great powers.",
            "The alliance system dragged countries into the conflict.",
            "Imperialism and nationalism increased the rivalry between the powers.",
            "The trigger was the assassination of Archduke Franz Ferdinand in Sarajevo in 1914."),
           "The assassination of Franz Ferdinand.",
           ("The war started because Germany invaded Poland.", "The Russian Revolution caused the war.")),
    _short("Why was the Marshall Plan introduced?",
           [{"id": "aid", "description": "US economic aid or money", "points": 1},
            {"id": "rebuild", "description": "Rebuilding Western Europe after the war", "points": 1},
            {"id": "communism", "description": "Stopping the spread of communism", "points": 1},
            {"id": "military", "description": "Calls it a military plan or a peace treaty", "points": -1}],
           "The Marshall Plan gave American economic aid to rebuild Western Europe after the Second World War. "
           "It also aimed to stop the spread of communism by stabilising those economies.",
           ("The United States gave money and economic aid to Europe.",
            "It was meant to rebuild Western Europe after the Second World War.",
            "The US wanted to stop communism from spreading by making the economies stable."),
           "To rebuild Europe after the war.",
           ("It was a military plan to invade the Soviet Union.",
            "It was the peace treaty that ended the First World War.")),
    _essay("Explain why the Cold War came to an end.",
           "10 points: Soviet economic weakness (2), Gorbachev's reforms (3), the revolutions of 1989 and the "
           "fall of the Berlin Wall (3), collapse of the USSR in 1991 and a clear argument (2).",
           "Economic stagnation weakened the Soviet Union, and Gorbachev's reforms of glasnost and perestroika "
           "loosened its control over Eastern Europe. Peaceful revolutions in 1989 and the fall of the Berlin "
           "Wall led to the collapse of the Soviet Union in 1991.",
           ("The Soviet economy was stagnating and could not keep up with the arms race.",
            "Gorbachev introduced glasnost and perestroika, which gave people more freedom.",
            "The Soviet Union stopped controlling Eastern Europe so tightly.",
            "In 1989 there were peaceful revolutions and the Berlin Wall fell.",
            "Finally the Soviet Union collapsed in 1991."),
           ("The Cold War ended because the United States won a war against the Soviet Union.",
            "It ended when the Berlin Wall was built in 1961."),
           "the end of the Cold War"),
))

PHYSICS = Exam("phys-120-midterm", "Physics 120: mechanics midterm", (
    _mc("What is the SI unit of force?", ("Joule", "Watt", "Newton", "Pascal"), "C"),
    _mc("Which of these quantities are vectors?", ("Mass", "Velocity", "Acceleration", "Temperature"),
        ["B", "C"], points=2),
    _tf("In a vacuum, a feather and a hammer dropped together reach the ground at the same time.", True),
    _num("A car accelerates uniformly from rest at 3 m/s² for 4 s. What is its final speed in m/s?", 12, 0,
         "m/s", (24, 7, 0.75)),
    _num("An object is dropped from rest. Using g = 9.8 m/s², how far does it fall in 2.0 s, in metres? "
         "Give one decimal place.", 19.6, 0.1, "m", (39.2, 9.8, 4.9)),
    _short("State Newton's first law of motion.",
           "3 points: stays at rest or keeps moving (1) in a straight line at constant speed (1) unless a net "
           "external force acts (1).",
           "An object stays at rest or keeps moving in a straight line at constant speed unless a net external "
           "force acts on it.",
           ("An object at rest stays at rest.", "A moving object keeps moving in a straight line at constant speed.",
            "This is true unless a net external force acts on it."),
           "An object stays at rest unless a force acts on it.",
           ("Force equals mass times acceleration.", "Every action has an equal and opposite reaction.")),
    _short("Why do astronauts in orbit feel weightless?",
           "3 points: continuous free fall (1) together with the spacecraft (1); gravity still acts but there is "
           "no normal force (1).",
           "Astronauts and their spacecraft are in continuous free fall around the Earth. Gravity still acts on "
           "them, but nothing pushes back on them, so they feel no weight.",
           ("They are in free fall around the Earth all the time.", "The spacecraft falls together with them.",
            "Gravity still pulls on them but there is no normal force pushing back."),
           "Because there is no gravity in space.",
           ("Because there is no gravity in space.", "Because they are too far away from the Earth.")),
    _essay("Use a swinging pendulum to explain the conservation of energy.",
           "10 points: potential energy at the top (2), conversion to kinetic energy on the way down (3), "
           "maximum speed at the bottom (2), total mechanical energy constant without friction (3).",
           "At the highest point the pendulum has maximum gravitational potential energy and no kinetic energy. "
           "As it swings down, potential energy is converted into kinetic energy, which is greatest at the lowest "
           "point. Without friction or air resistance the total mechanical energy stays constant.",
           ("At the top of the swing the pendulum stops for a moment and has maximum potential energy.",
            "As it swings down the potential energy is converted into kinetic energy.",
            "At the lowest point it moves fastest, so its kinetic energy is greatest.",
            "Then it swings up again and the kinetic energy turns back into potential energy.",
            "If there is no friction or air resistance the total energy stays the same."),
           ("The pendulum creates energy each time it swings.",
            "Energy is used up at the bottom of the swing and the pendulum stops immediately."),
           "conservation of energy"),
))

CHEMISTRY = Exam("chem-105-unit3", "General chemistry 105: atoms, moles and reactions", (
    _mc("Which particle carries a negative charge?", ("Proton", "Neutron", "Electron", "Nucleus"), "C"),
    _mc("Which of these elements are noble gases?", ("Chlorine", "Neon", "Hydrogen", "Argon"), ["B", "D"],
        points=2),
    _tf("Pure water at 25 °C has a pH of 7.", True),
    _num("What is the molar mass of water in g/mol? Answers within 0.1 are accepted.", 18.02, 0.1, "g/mol",
         (16, 10, 20.02)),
    _num("How many moles of water are in 36 g of water? Use M = 18 g/mol.", 2, 0, "mol", (0.5, 648, 18)),
    _short("What is an isotope?",
           "3 points: atoms of the same element (1) with the same number of protons (1) but a different number "
           "of neutrons (1).",
           "Isotopes are atoms of the same element with the same number of protons but a different number of "
           "neutrons. They therefore have different mass numbers.",
           ("Isotopes are atoms of the same element.", "They have the same number of protons.",
            "They have a different number of neutrons, so a different mass number."),
           "Same protons, different neutrons.",
           ("Isotopes are atoms with a different number of electrons.", "An isotope is a radioactive molecule.")),
    _short("Why does table salt dissolve in water?",
           "3 points: water is polar (1), attraction between water and the Na+ and Cl- ions (1), ions are "
           "surrounded and separated from the lattice (1).",
           "Water molecules are polar and attract the positive sodium ions and negative chloride ions. The ions "
           "become surrounded by water molecules and separate from the crystal lattice.",
           ("Water is a polar molecule.", "It attracts the positive sodium ions and the negative chloride ions.",
            "The ions get surrounded by water molecules and break away from the crystal."),
           "Because water is polar.",
           ("The salt melts in the water.", "Salt reacts with water and turns into a new substance.")),
    _essay("Explain how a catalyst speeds up a chemical reaction.",
           "10 points: alternative pathway (3), lower activation energy (3), more successful collisions so a "
           "higher rate (2), catalyst not used up (2).",
           "A catalyst provides an alternative reaction pathway with a lower activation energy. More particles "
           "therefore have enough energy to react when they collide, so the rate increases. The catalyst is not "
           "used up in the reaction.",
           ("A catalyst gives the reaction a different pathway.", "This pathway has a lower activation energy.",
            "So more collisions between particles have enough energy to be successful.",
            "That means the rate of reaction goes up.", "The catalyst itself is not used up and can be reused."),
           ("A catalyst speeds up the reaction by heating the particles up.",
            "The catalyst reacts and is used up, which gives the reaction more energy."),
           "how catalysts work"),
))

ECONOMICS = Exam("econ-101-midterm", "Principles of economics: midterm", (
    _mc("When the price of a normal good rises, what usually happens to the quantity demanded?",
        ("It increases", "It decreases", "It stays the same", "It doubles"), "B"),
    _mc("Which of the following are examples of fiscal policy?",
        ("Changing income tax rates", "Raising the central bank interest rate",
         "Increasing government spending on roads", "Buying government bonds in open-market operations"),
        ["A", "C"], points=2),
    _tf("Inflation reduces the purchasing power of money.", True),
    _num("The price of a shirt rises from $40 to $50. What is the percentage increase? Answers within 0.5 "
         "are accepted.", 25, 0.5, "%", (20, 10, 0.25)),
    _num("Nominal GDP is 1100 and the GDP deflator is 110. What is real GDP?", 1000, 0, "",
         (1210, 990, 10)),
    _short("What is opportunity cost?",
           "3 points: the value (1) of the next best alternative (1) that is given up when choosing (1).",
           "Opportunity cost is the value of the next best alternative that is given up when a choice is made.",
           ("It is the value of what you give up.", "It is the next best alternative.",
            "You give it up when you make a choice."),
           "What you give up to get something.",
           ("Opportunity cost is the money price of a good.", "It is the profit a firm makes from an opportunity.")),
    _short("Why can a price ceiling cause a shortage?",
           "3 points: ceiling below equilibrium (1), quantity demanded rises and quantity supplied falls (1), "
           "demand exceeds supply (1).",
           "A price ceiling set below the equilibrium price raises the quantity demanded and lowers the quantity "
           "supplied. Demand then exceeds supply, which creates a shortage.",
           ("The ceiling is set below the equilibrium price.",
            "At the lower price people want to buy more but firms supply less.",
            "So the quantity demanded is bigger than the quantity supplied, which is a shortage."),
           "Because demand is higher than supply.",
           ("A price ceiling raises prices so nobody can afford the good.",
            "Firms produce too much, so there is a surplus.")),
    _essay("Explain how raising interest rates can help a central bank reduce inflation.",
           "10 points: borrowing more expensive and saving more attractive (3), lower consumption and "
           "investment (3), lower aggregate demand eases prices (3), time lag or limits (1).",
           "Higher interest rates make borrowing more expensive and saving more attractive, so households and "
           "firms spend and invest less. Lower aggregate demand eases the pressure on prices, which reduces "
           "inflation over time.",
           ("Higher interest rates make loans and mortgages more expensive.",
            "Saving becomes more attractive because it earns more interest.",
            "So households consume less and firms invest less.",
            "This lowers aggregate demand in the economy.",
            "With less demand, firms raise prices more slowly and inflation falls over time."),
           ("Higher interest rates let banks print less money, so prices fall immediately.",
            "Raising interest rates increases spending, which lowers prices."),
           "interest rates and inflation"),
))

EARTH_SCIENCE = Exam("geo-150-midterm", "Earth science 150: planet, oceans and climate", (
    _mc("Which layer of the Earth is liquid?", ("Inner core", "Outer core", "Mantle", "Crust"), "B"),
    _mc("Which of these gases are greenhouse gases?", ("Oxygen", "Methane", "Nitrogen", "Water vapour"),
        ["B", "D"], points=2),
    _tf("The seasons are caused by changes in the Earth's distance from the Sun.", False),
    _num("By how many degrees is the Earth's axis tilted? Answers within 0.5 degrees are accepted.", 23.5, 0.5,
         "°", (66.5, 45, 90)),
    _num("How many hours does the Earth take to rotate once relative to the Sun?", 24, 0, "hours",
         (365, 12, 23.9)),
    _short("What causes the ocean tides?",
           "3 points: gravitational pull (1) mainly of the Moon, partly the Sun (1), bulges of water that move "
           "as the Earth rotates (1).",
           "Tides are caused mainly by the gravitational pull of the Moon, and to a lesser extent the Sun, on the "
           "Earth's oceans. This creates bulges of water that move around as the Earth rotates.",
           ("Tides are caused by gravity.", "Mostly the Moon's pull, and a bit the Sun's.",
            "The pull makes bulges of water and the Earth rotates through them."),
           "The gravity of the Moon.",
           ("Tides are caused by the wind pushing the water.", "Tides happen because the ocean gets warmer.")),
    _short("What is the difference between weather and climate?",
           "3 points: weather is short-term (1) at a place and time (1); climate is the long-term average "
           "over decades (1).",
           "Weather is the short-term state of the atmosphere at a particular place and time. Climate is the "
           "average pattern of weather in a region over many years, usually 30 or more.",
           ("Weather is what the atmosphere is like over a short time.", "It is about one place on one day.",
            "Climate is the average weather of a region over many years."),
           "Weather is short term and climate is long term.",
           ("Weather and climate mean the same thing.", "Climate is the temperature and weather is the rain.")),
    _essay("Explain how the greenhouse effect warms the Earth and how human activity strengthens it.",
           "10 points: sunlight heats the surface which emits infrared (2), greenhouse gases absorb and re-emit "
           "infrared (3), heat trapped in the lower atmosphere (2), fossil fuels and deforestation add gases (3).",
           "Sunlight warms the Earth's surface, which then emits infrared radiation. Greenhouse gases such as "
           "carbon dioxide and methane absorb and re-emit this radiation, trapping heat in the lower atmosphere. "
           "Burning fossil fuels and cutting down forests increase these gases and strengthen the effect.",
           ("Sunlight reaches the ground and warms the surface of the Earth.",
            "The warm surface gives off infrared radiation.",
            "Greenhouse gases like carbon dioxide and methane absorb this radiation and send it back down.",
            "This traps heat in the lower atmosphere.",
            "People burn fossil fuels and cut down forests, which adds more of these gases and makes it stronger."),
           ("The greenhouse effect is caused by the hole in the ozone layer letting in more sunlight.",
            "Greenhouses on farms release heat that warms the planet."),
           "the greenhouse effect"),
))

EXAM_BANK: tuple[Exam, ...] = (BIOLOGY, HISTORY, PHYSICS, CHEMISTRY, ECONOMICS, EARTH_SCIENCE)

OFF_TOPIC = (
    "I don't know.", "idk", "Sorry, I didn't have time to revise this chapter.", "See my notes.",
    "We did not cover this in class.", "?", "Can I get partial credit for trying?",
)
ESSAY_OPENERS = (
    "In this answer I will explain {topic}.", "{Topic} is one of the key ideas of this course.",
    "To understand {topic} we have to look at it step by step.", "",
)
ESSAY_FILLERS = (
    "This is very important.", "There are many examples of this in everyday life.",
    "Our teacher showed us an example of this in class.", "This was also discussed in the textbook.",
)
ESSAY_CLOSERS = (
    "In conclusion, these points explain {topic}.", "That is my explanation of {topic}.", "",
)


# ---------------------------------------------------------------- students' answers

def _roughen(rng: random.Random, text: str) -> str:
    """Make a typed answer look typed: a lower-case start, a dropped full stop, a typo, a double space."""
    if not text:
        return text
    if rng.random() < 0.15:
        text = text[0].lower() + text[1:]
    if rng.random() < 0.2 and text.endswith("."):
        text = text[:-1]
    if rng.random() < 0.12:
        words = text.split(" ")
        long_words = [i for i, w in enumerate(words) if len(w) > 5 and w.isalpha()]
        if long_words:
            i = rng.choice(long_words)
            j = rng.randrange(1, len(words[i]) - 2)
            w = words[i]
            words[i] = w[:j] + w[j + 1] + w[j] + w[j + 2:]
            text = " ".join(words)
    if rng.random() < 0.05:
        text = text.replace(" ", "  ", 1)
    return text


def _answer_multiple_choice(rng: random.Random, q: Question, ability: float) -> str:
    """Letters: right or wrong; for a multi-answer key also incomplete or over-complete sets."""
    options, key = q.spec["options"], q.spec["answer_key"]
    if rng.random() < 0.02:
        return ""
    if isinstance(key, list):
        chosen = _multi_choice(rng, options, key, ability)
        if rng.random() < 0.3:
            rng.shuffle(chosen)
        text = rng.choice((",", ", ", ",")).join(chosen)
    else:
        text = key if rng.random() < ability else rng.choice([o for o in options if o != key])
    return text.lower() if rng.random() < 0.05 else text


def _multi_choice(rng: random.Random, options: list[str], key: list[str], ability: float) -> list[str]:
    """The letters one student ticks for a multi-answer question."""
    r = rng.random()
    if r < ability:
        return sorted(key)
    others = [o for o in options if o not in key]
    if r < ability + (1 - ability) * 0.45:
        return [rng.choice(key)]
    if r < ability + (1 - ability) * 0.75:
        return sorted([*key, rng.choice(others)])
    return sorted(rng.sample(options, rng.choice((1, 2))))


def _answer_true_false(rng: random.Random, q: Question, ability: float) -> str:
    """true/false, mostly spelled out, sometimes as t/f, yes/no or 1/0."""
    if rng.random() < 0.02:
        return ""
    value = q.spec["answer_key"] if rng.random() < ability else not q.spec["answer_key"]
    spellings = [("true", "false")] * 14 + [("True", "False")] * 3 + [("t", "f"), ("yes", "no"), ("1", "0")]
    yes, no = rng.choice(spellings)
    return yes if value else no


def _decimals(value: float) -> int:
    """How many decimal places a key or tolerance is written with."""
    text = repr(value)
    return len(text.split(".")[1]) if "." in text and not text.endswith(".0") else 0


def _answer_numeric(rng: random.Random, q: Question, ability: float) -> str:
    """A number: within tolerance, just outside it, a typical mistake, or of the wrong shape."""
    key, tol = q.spec["answer_key"], q.spec["tolerance"]
    places = max(_decimals(key), _decimals(tol))
    step = 10.0 ** -places
    if rng.random() < 0.03:
        return ""
    r = rng.random()
    if r < ability:
        half = int(tol / 2 / step)  # stay well inside the tolerance, away from float edge cases
        value = key + rng.randint(-half, half) * step
        text = f"{value:.{places}f}"
        return f"{text}.0" if places == 0 and rng.random() < 0.1 else text
    r = rng.random()
    if r < 0.35:  # a near miss, clearly outside the tolerance
        return f"{key + rng.choice((-1, 1)) * (2 * tol + rng.randint(1, 5) * step):.{places}f}"
    if r < 0.8:
        value = rng.choice(q.mistakes)
        return f"{value:.{_decimals(value)}f}"
    return _wrong_shape(rng, key, places, q.unit)


def _wrong_shape(rng: random.Random, key: float, places: int, unit: str) -> str:
    """The right number written in a way the contract does not accept (it scores 0)."""
    text = f"{key:.{places}f}"
    shapes = [f"about {text}", f"{text}?"]
    if unit:
        shapes.append(f"{text} {unit}")
    if "." in text:
        shapes.append(text.replace(".", ","))
    return rng.choice(shapes)


@dataclass
class FreeTextPools:
    """Text a student may write that has nothing to do with the question asked."""

    off_topic: tuple[str, ...]


def _answer_free_text(rng: random.Random, q: Question, ability: float, pools: FreeTextPools) -> str:
    """Free text of varying concept coverage, derived from the question's reference answer."""
    r = rng.random()
    if r < 0.04:
        return ""
    if r < 0.09:
        return rng.choice(pools.off_topic)
    if q.qtype == "short_answer" and r < 0.21:
        return q.common
    covered = [c for c in q.concepts if rng.random() < ability]
    if not covered:
        return _roughen(rng, rng.choice(q.wrong))
    if q.qtype == "essay":
        return _essay_text(rng, q, covered)
    if len(covered) == len(q.concepts) and rng.random() < 0.3:
        return _roughen(rng, q.spec["reference_answer"])
    return _roughen(rng, " ".join(covered))


def _essay_text(rng: random.Random, q: Question, covered: list[str]) -> str:
    """An essay: an opener, the concepts the student knows with some filler, maybe a conclusion."""
    sentences = [rng.choice(ESSAY_OPENERS).format(topic=q.topic, Topic=q.topic[0].upper() + q.topic[1:])]
    for concept in covered:
        sentences.append(concept)
        if rng.random() < 0.3:
            sentences.append(rng.choice(ESSAY_FILLERS))
    if rng.random() < 0.2:
        sentences.append(rng.choice(q.wrong))
    sentences.append(rng.choice(ESSAY_CLOSERS).format(topic=q.topic))
    sentences = [s for s in sentences if s]
    if len(sentences) > 3 and rng.random() < 0.5:
        cut = rng.randrange(2, len(sentences) - 1)
        return _roughen(rng, " ".join(sentences[:cut])) + "\n\n" + " ".join(sentences[cut:])
    return _roughen(rng, " ".join(sentences))


def _answer(rng: random.Random, q: Question, ability: float, pools: FreeTextPools) -> str:
    """One student's answer to one question."""
    if q.qtype == "multiple_choice":
        return _answer_multiple_choice(rng, q, ability)
    if q.qtype == "true_false":
        return _answer_true_false(rng, q, ability)
    if q.qtype == "numeric":
        return _answer_numeric(rng, q, ability)
    return _answer_free_text(rng, q, ability, pools)


# ---------------------------------------------------------------- one institution's day

@dataclass
class Row:
    """One answer row and, for a deliberately bad row, the field it is bad in."""

    values: dict
    defect: str | None = None
    local_time: datetime | None = None


@dataclass
class Submission:
    """One student's attempt at one exam: its rows and when it was finished."""

    submission_id: str
    rows: list[Row] = field(default_factory=list)

    @property
    def finished(self) -> datetime:
        """When the attempt's last answer was saved (local time)."""
        return max(r.local_time for r in self.rows)


def _institution_rng(seed: int, institution: str, exam_day: date) -> random.Random:
    """A generator of its own per (seed, institution, day): the order of institutions does not matter."""
    return random.Random(f"gradeflow-sample-day:{seed}:{institution}:{exam_day.isoformat()}")


def _students(rng: random.Random, institution: str, count: int) -> list[tuple[str, float]]:
    """A pool of (student_id, ability) somewhat larger than one exam's sitting."""
    prefix = "".join(ch for ch in institution.upper() if ch.isalnum())[:3] or "STU"
    numbers = rng.sample(range(100_000, 1_000_000), count)
    return [(f"{prefix}{n}", min(0.97, max(0.12, rng.betavariate(5, 2.5)))) for n in numbers]


def _local(exam_day: date, zone: ZoneInfo, seconds_after_eight: int) -> datetime:
    """A local wall-clock time on the exam day, clamped to 08:00:00–17:59:59."""
    seconds = min(max(seconds_after_eight, 0), DAY_LAST_SECOND)
    naive = datetime.combine(exam_day, DAY_START) + timedelta(seconds=seconds)
    return naive.replace(tzinfo=zone)


def _sit_exam(rng: random.Random, exam: Exam, sitting_hour: int, students: list[tuple[str, float]],
              count: int, exam_day: date, zone: ZoneInfo, pools: FreeTextPools) -> list[Submission]:
    """Every attempt at one exam: each chosen student answers every question, one row per answer."""
    attempts = []
    for number, (student_id, ability) in enumerate(rng.sample(students, count), start=1):
        sub = Submission(f"{exam.exam_id}-{exam_day:%Y%m%d}-{number:04d}")
        clock = (sitting_hour - 8) * 3600 + rng.randint(0, 40 * 60)
        for qid, q in zip(exam.question_ids(), exam.questions, strict=True):
            clock += rng.randint(60, 9 * 60) if q.qtype != "essay" else rng.randint(10 * 60, 35 * 60)
            when = _local(exam_day, zone, clock)
            values = {"submission_id": sub.submission_id, "student_id": student_id, "exam_id": exam.exam_id,
                      "question_id": qid, "answer": _answer(rng, q, ability, pools),
                      "submitted_at": when.isoformat(timespec="seconds")}
            sub.rows.append(Row(values, local_time=when))
        attempts.append(sub)
    _ensure_identical_answers(rng, exam, attempts)
    return attempts


def _ensure_identical_answers(rng: random.Random, exam: Exam, attempts: list[Submission], at_least: int = 4) -> None:
    """Make sure several students give the very same short answer to each short-answer question."""
    for position, q in enumerate(exam.questions):
        if q.qtype != "short_answer":
            continue
        have = sum(1 for sub in attempts if sub.rows[position].values["answer"] == q.common)
        others = [sub for sub in attempts if sub.rows[position].values["answer"] != q.common]
        for sub in rng.sample(others, min(len(others), max(0, at_least - have))):
            sub.rows[position].values["answer"] = q.common


# ---------------------------------------------------------------- deliberately bad rows

def _unknown_exam_id(rng: random.Random, exam_id: str) -> str:
    """A typo of a real exam id that names no exam."""
    known = {e.exam_id for e in EXAM_BANK}
    course, _, rest = exam_id.rpartition("-")
    candidates = [exam_id.replace("-", "_", 1), f"{exam_id}-retake", f"{course}-{rest[0]}{rest[2]}{rest[1]}{rest[3:]}",
                  f"{course}-{rest}s"]
    return rng.choice([c for c in candidates if c not in known and c != exam_id])


def _unparseable_time(rng: random.Random, when: datetime) -> str:
    """submitted_at in a format that is not ISO 8601."""
    formats = ("%d/%m/%Y %H:%M", "%m/%d/%Y %I:%M %p", "%a %b %d %H:%M:%S %Y", "%d.%m.%Y, %H:%M Uhr")
    if rng.random() < 0.2:
        return when.strftime("%Y-%m-%dT") + f"{when.hour + 24:02d}" + when.strftime(":%M:%S%z")
    return when.strftime(rng.choice(formats))


def _overlong_answer(rng: random.Random, q: Question) -> str:
    """A pasted wall of text over the 20,000-character limit."""
    paragraph = " ".join(q.concepts) or q.spec.get("reference_answer", "lorem ipsum")
    target = MAX_ANSWER_CHARS + rng.randint(200, 4000)
    text = ""
    while len(text) <= target:
        text += paragraph + "\n\n"
    return text


def _spoil(rng: random.Random, row: Row, defect: str, q: Question) -> None:
    """Give one row exactly one defect."""
    values = row.values
    if defect == "student_id":
        values["student_id"] = None
    elif defect == "question_id":
        values["question_id"] = rng.choice(("q9", "q10", "q12", "bonus", "q3b"))
    elif defect == "exam_id":
        values["exam_id"] = _unknown_exam_id(rng, values["exam_id"])
    elif defect == "submitted_at":
        values["submitted_at"] = _unparseable_time(rng, row.local_time)
    elif defect == "answer":
        values["answer"] = _overlong_answer(rng, q)
    row.defect = defect


def _inject_bad_rows(rng: random.Random, attempts: list[Submission], exams: dict[str, Exam]) -> None:
    """About 1% bad rows: one of each defect, the rest of the cheap kinds; one over-long answer."""
    slots = [(s, r) for s, sub in enumerate(attempts) for r in range(len(sub.rows))]
    total = max(len(DEFECTS), round(len(slots) * BAD_ROW_SHARE))
    defects = list(DEFECTS) + [rng.choice(DEFECTS[:-1]) for _ in range(total - len(DEFECTS))]
    essay_slots = [(s, r) for s, r in slots
                   if exams[attempts[s].rows[r].values["exam_id"]].questions[r].qtype == "essay"]
    chosen = [rng.choice(essay_slots)]
    chosen += rng.sample([slot for slot in slots if slot != chosen[0]], total - 1)
    for (s, r), defect in zip(chosen, ["answer", *[d for d in defects if d != "answer"]], strict=True):
        row = attempts[s].rows[r]
        _spoil(rng, row, defect, exams[row.values["exam_id"]].questions[r])


# ---------------------------------------------------------------- files

def _csv_bytes(rows: list[dict]) -> bytes:
    """CSV, UTF-8, header row; a missing value is an empty field."""
    buf = io.StringIO(newline="")
    writer = csv.writer(buf)
    writer.writerow(COLUMNS)
    for row in rows:
        writer.writerow(["" if row[c] is None else row[c] for c in COLUMNS])
    return buf.getvalue().encode("utf-8")


def _jsonl_bytes(rows: list[dict]) -> bytes:
    """One JSON object a line; a missing value is null."""
    return "".join(json.dumps({c: row[c] for c in COLUMNS}, ensure_ascii=False) + "\n" for row in rows).encode()


def _parquet_bytes(rows: list[dict]) -> bytes:
    """Parquet with six string columns; a missing value is null."""
    table = pa.table({c: pa.array([row[c] for row in rows], type=pa.string()) for c in COLUMNS})
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="snappy")
    return buf.getvalue()


WRITERS = {"csv": _csv_bytes, "jsonl": _jsonl_bytes, "parquet": _parquet_bytes}


def _split_into_files(attempts: list[Submission]) -> list[tuple[str, list[Submission]]]:
    """Uploads through the day: attempts by finishing time, cut into up to five files, each format at least once."""
    ordered = sorted(attempts, key=lambda sub: (sub.finished, sub.submission_id))
    count = min(len(FILE_FORMATS), len(ordered))
    if count < len(set(FILE_FORMATS)):
        raise ValueError("too few submissions to fill one file of each format")
    bounds = [round(i * len(ordered) / count) for i in range(count + 1)]
    return [(f"upload-{i + 1:02d}.{FILE_FORMATS[i]}", ordered[bounds[i]:bounds[i + 1]]) for i in range(count)]


def _resend_name(name: str) -> str:
    """`upload-02.jsonl` -> `upload-02.resend.jsonl`: same type, sorts right after the original."""
    stem, _, ext = name.rpartition(".")
    return f"{stem}{RESEND_MARK}.{ext}"


def _write(path: Path, data: bytes) -> None:
    """Write bytes, creating folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


# ---------------------------------------------------------------- the day

def _pick_exams(rng: random.Random) -> list[Exam]:
    """Two or three exams from the bank."""
    return rng.sample(EXAM_BANK, rng.choice((2, 3)))


def _off_topic_pool(exams: list[Exam]) -> FreeTextPools:
    """Answers that miss the point: generic ones and sentences from other exams' reference answers."""
    taken = {e.exam_id for e in exams}
    borrowed = tuple(q.concepts[0] for e in EXAM_BANK if e.exam_id not in taken for q in e.questions if q.concepts)
    return FreeTextPools(OFF_TOPIC + borrowed)


def _generate_institution(out_dir: Path, institution: str, exam_day: date, zone: ZoneInfo, seed: int,
                          submissions_per_exam: int) -> dict:
    """Write one institution's exam day and return its manifest entry."""
    rng = _institution_rng(seed, institution, exam_day)
    base = out_dir / "incoming" / institution / exam_day.isoformat()
    if base.exists():
        shutil.rmtree(base)
    exams = _pick_exams(rng)
    pools = _off_topic_pool(exams)
    students = _students(rng, institution, max(submissions_per_exam + 2, round(submissions_per_exam * 1.25)))
    hours = sorted(rng.sample(SITTING_HOURS, len(exams)))
    attempts: list[Submission] = []
    for exam, hour in zip(exams, hours, strict=True):
        attempts += _sit_exam(rng, exam, hour, students, submissions_per_exam, exam_day, zone, pools)
    _inject_bad_rows(rng, attempts, {e.exam_id: e for e in exams})

    prefix = f"incoming/{institution}/{exam_day.isoformat()}"
    exam_keys = []
    for exam in sorted(exams, key=lambda e: e.exam_id):
        key = f"{prefix}/exams/{exam.exam_id}.json"
        _write(out_dir / key, (json.dumps(exam.definition(), indent=2, ensure_ascii=False) + "\n").encode())
        exam_keys.append(key)
    files = _split_into_files(attempts)
    submission_keys = []
    for name, subs in files:
        key = f"{prefix}/submissions/{name}"
        _write(out_dir / key, WRITERS[name.rpartition(".")[2]]([row.values for sub in subs for row in sub.rows]))
        submission_keys.append(key)
    original = rng.choice(submission_keys)
    duplicate = _resend_name(original)
    _write(out_dir / duplicate, (out_dir / original).read_bytes())
    return _manifest_entry(exams, attempts, exam_keys + submission_keys + [duplicate], duplicate)


def _manifest_entry(exams: list[Exam], attempts: list[Submission], keys: list[str], duplicate: str) -> dict:
    """Exact counts: every row once (the re-sent file adds nothing), good and bad apart."""
    rows = [row for sub in attempts for row in sub.rows]
    good = [row for row in rows if row.defect is None]
    bad = Counter(row.defect for row in rows if row.defect is not None)
    return {
        "exams": len(exams),
        "submissions": len({row.values["submission_id"] for row in good}),
        "answers": len(good),
        "bad_rows": sum(bad.values()),
        "bad_rows_by_field": {d: bad[d] for d in DEFECTS},
        "files": keys,
        "duplicate_file": duplicate,
    }


def submissions_for_answers(institution: str, exam_day: date, answers: int, *, seed: int = 7) -> int:
    """Submissions per exam that give `institution` a day of about `answers` answer rows (at least 2).

    The day's exams are the generator's first draw for (seed, institution, day), so this is exact up to
    rounding: answers ~ submissions_per_exam x the questions of the exams drawn.
    """
    questions = sum(len(exam.questions) for exam in _pick_exams(_institution_rng(seed, institution, exam_day)))
    return max(2, math.ceil(answers / questions))


def load_timezones(path: Path = INSTITUTIONS_YAML) -> dict[str, str]:
    """institution id -> IANA time zone, from institutions.yaml."""
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    return {entry["id"]: entry["timezone"] for entry in doc["institutions"]}


def _resolve_zones(institutions: list[str], timezones: dict[str, str] | None) -> dict[str, ZoneInfo]:
    """The time zone of every institution: given ones first, else institutions.yaml."""
    known = dict(timezones) if timezones is not None else load_timezones()
    missing = [i for i in institutions if i not in known]
    if missing:
        raise ValueError(f"no time zone for institution(s) {missing}")
    return {i: ZoneInfo(known[i]) for i in institutions}


def generate_day(out_dir: Path, institutions: list[str], exam_day: date, *, seed: int = 7,
                 submissions_per_exam: int = 300, timezones: dict[str, str] | None = None) -> dict:
    """Write a sample exam day for each institution under out_dir/incoming/ and return the manifest.

    An existing `incoming/<institution>/<day>/` folder is replaced. The manifest has, per institution:
    exams, submissions (distinct submission ids with a good row), answers (good rows, the re-sent file
    counted once), bad_rows (and bad_rows_by_field), files (keys in upload order) and duplicate_file.
    """
    if submissions_per_exam < 2:
        raise ValueError("submissions_per_exam must be at least 2")
    if len(set(institutions)) != len(institutions):
        raise ValueError(f"institutions listed twice: {institutions}")
    zones = _resolve_zones(institutions, timezones)
    return {inst: _generate_institution(Path(out_dir), inst, exam_day, zones[inst], seed, submissions_per_exam)
            for inst in institutions}


# ---------------------------------------------------------------- upload

def _upload_order(out_dir: Path) -> list[str]:
    """Keys under incoming/: exam files first, then submissions by key, re-sent copies (same bytes) last."""
    paths = sorted((p for p in (out_dir / "incoming").rglob("*") if p.is_file()),
                   key=lambda p: p.relative_to(out_dir).as_posix())
    exams, submissions, resent = [], [], []
    seen: set[tuple[Path, str]] = set()
    for path in paths:
        key = path.relative_to(out_dir).as_posix()
        if path.parent.name == "exams":
            exams.append(key)
            continue
        digest = (path.parent, hashlib.sha256(path.read_bytes()).hexdigest())
        (resent if digest in seen else submissions).append(key)
        seen.add(digest)
    return exams + submissions + resent


def upload_day(out_dir: Path, s3_client, bucket: str) -> list[str]:
    """Upload every file under out_dir/incoming with its relative key, in arrival order; return the keys."""
    out_dir = Path(out_dir)
    keys = _upload_order(out_dir)
    for key in keys:
        s3_client.put_object(Bucket=bucket, Key=key, Body=(out_dir / key).read_bytes())
    return keys


# ---------------------------------------------------------------- CLI

def main(argv: list[str] | None = None) -> int:
    """`python -m devstack.sample_day --out DIR --day YYYY-MM-DD`: write the day, print the manifest."""
    parser = argparse.ArgumentParser(prog="python -m devstack.sample_day", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, type=Path, help="folder to write incoming/ into")
    parser.add_argument("--day", required=True, type=date.fromisoformat, help="exam day, YYYY-MM-DD")
    parser.add_argument("--institutions", help="comma-separated ids (default: all in include/institutions.yaml)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--submissions", type=int, default=300, help="submissions per exam")
    args = parser.parse_args(argv)
    institutions = args.institutions.split(",") if args.institutions else list(load_timezones())
    manifest = generate_day(args.out, institutions, args.day, seed=args.seed, submissions_per_exam=args.submissions)
    json.dump(manifest, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
