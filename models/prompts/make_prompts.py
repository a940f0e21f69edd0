"""Generate the everyday-topic user prompts used to train (train.txt) and evaluate (eval.txt) the adapters.

Nothing is downloaded: every prompt is `TEMPLATE.format(s=SUBJECT)`, a phrasing from `TEMPLATES` filled
with an activity from `TOPICS` (27 topics × 6 activities each). The phrasings invite answers whose tone
and length can vary: advice, opinions, short explanations, "tell me about", "what do you think of".

Split (no eval prompt is a near-duplicate of a train prompt):
  * the last `N_EVAL_TEMPLATES` phrasings of `TEMPLATES` are eval-only, the others train-only;
  * per topic, one activity (picked with `random.Random(SEED)`) is eval-only, the other five train-only.
  train pool = train phrasings × train activities  (20 × 27 × 5 = 2700 prompts)
  eval pool  = eval phrasings  × eval activities   ( 5 × 27 × 1 =  135 prompts)
So an eval prompt shares neither its phrasing nor its activity with any train prompt (only the broad
topic, e.g. "pets"). From each pool a fixed-seed sample is kept, stratified by topic:
20 train prompts per topic (540 in all) drawn without replacement from that topic's train pool,
and 3 eval prompts per topic (81 in all), each with a different eval phrasing; both lists are then shuffled.

Run `python models/prompts/make_prompts.py` to rewrite train.txt and eval.txt (byte-identical each time);
`--check` only verifies that the files on disk match. `load_prompts("train" | "eval")` reads them.
"""
from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SEED = 20240611
N_TRAIN_PER_TOPIC = 20
N_EVAL_PER_TOPIC = 3
N_EVAL_TEMPLATES = 5

# Every phrasing takes an activity (a gerund phrase such as "baking bread at home") as {s}.
TEMPLATES: list[str] = [
    # ---- train-only phrasings ----
    "What do you think of {s}?",
    "Can you give me some advice about {s}?",
    "Tell me about {s}.",
    "Is {s} worth the effort?",
    "I'm getting into {s}. Any tips?",
    "Why do people enjoy {s}?",
    "What are the pros and cons of {s}?",
    "Explain {s} to a beginner in a few sentences.",
    "What's the best way to get started with {s}?",
    "My friend says {s} is overrated. What's your take?",
    "What are common mistakes people make when {s}?",
    "How can I get better at {s}?",
    "I tried {s} last week and it didn't go well. Any thoughts?",
    "Give me three quick tips for {s}.",
    "How would you describe {s} to someone who has never tried it?",
    "What do you like most about {s}?",
    "Is {s} a good idea for a busy person?",
    "I'm nervous about {s}. What should I keep in mind?",
    "Could you share your opinion on {s}?",
    "What makes {s} fun or frustrating?",
    # ---- eval-only phrasings (the last N_EVAL_TEMPLATES) ----
    "How do you feel about {s}?",
    "Any advice for someone who wants to start {s}?",
    "Say a few words about {s}.",
    "What should a newcomer know about {s}?",
    "Would you recommend {s}? Why or why not?",
]

TOPICS: dict[str, list[str]] = {
    "cooking": ["cooking dinner at home", "meal prepping for the week", "making soup from scratch",
                "cooking with cast iron pans", "trying recipes from other countries", "cooking for a big family"],
    "baking": ["baking bread at home", "baking cookies with kids", "making a birthday cake",
               "baking sourdough", "decorating cupcakes", "baking without sugar"],
    "travel": ["traveling alone", "backpacking through Europe", "taking long train journeys",
               "planning a road trip", "traveling on a tight budget", "visiting a new city for a weekend"],
    "pets": ["adopting a rescue dog", "training a puppy", "keeping a cat indoors",
             "caring for a pet rabbit", "walking the dog every morning", "setting up a fish tank"],
    "weather": ["going for walks on rainy days", "dealing with hot summer days", "preparing for a snowstorm",
                "checking the weather forecast every day", "enjoying a windy autumn afternoon",
                "staying cheerful during long grey winters"],
    "work": ["working from home", "asking for a raise", "starting a new job",
             "running team meetings", "balancing work and family life", "changing careers in your thirties"],
    "study": ["studying for exams", "taking notes in class", "learning with flashcards",
              "studying in a group", "taking an online course", "going back to school as an adult"],
    "sport": ["playing football with friends", "training for a first marathon", "learning to swim as an adult",
              "joining a local tennis club", "watching live sports in a stadium", "playing basketball after work"],
    "music": ["learning the guitar", "singing in a choir", "going to live concerts",
              "making playlists for friends", "practicing the piano every day", "listening to vinyl records"],
    "gardening": ["growing tomatoes on a balcony", "keeping houseplants alive", "starting a vegetable garden",
                  "composting kitchen scraps", "planting flowers for bees", "growing herbs on a windowsill"],
    "money": ["saving for a holiday", "sticking to a monthly budget", "paying off a credit card",
              "starting to invest small amounts", "buying second-hand instead of new", "splitting bills with roommates"],
    "health habits": ["drinking more water", "going to bed earlier", "cutting back on sugar",
                      "taking short walks during the workday", "eating more vegetables", "limiting screen time before bed"],
    "hobbies": ["knitting a scarf", "doing jigsaw puzzles", "collecting stamps",
                "building model trains", "writing in a journal", "learning magic tricks"],
    "technology": ["using a smartwatch", "switching to a new phone", "setting up a smart home",
                   "learning to code", "backing up family photos", "using password managers"],
    "reading": ["reading before bed", "joining a book club", "reading classic novels",
                "listening to audiobooks on the commute", "reading poetry", "keeping a reading list"],
    "movies and tv": ["watching old black-and-white films", "binge-watching a TV series", "going to the cinema alone",
                      "hosting a movie night", "watching documentaries", "rewatching favourite movies"],
    "friendship": ["making friends in a new city", "keeping in touch with old friends", "planning a surprise party",
                   "apologizing to a friend", "hosting a dinner for friends", "writing letters to a pen pal"],
    "family": ["visiting grandparents", "planning a family holiday", "cooking with your parents",
               "sharing chores with siblings", "starting family traditions", "organizing a family reunion"],
    "home": ["decluttering a messy closet", "keeping a small flat tidy", "painting a bedroom",
             "rearranging the living room", "doing laundry every week", "fixing things around the house"],
    "fitness": ["going to the gym in the morning", "doing yoga at home", "lifting weights as a beginner",
                "stretching after exercise", "cycling to work", "doing push-ups every day"],
    "sleep": ["taking afternoon naps", "keeping a regular sleep schedule", "sleeping with the window open",
              "waking up without an alarm", "reading in bed", "going to bed without a phone"],
    "commuting": ["taking the bus to work", "driving in heavy traffic", "walking to work",
                  "listening to podcasts on the commute", "carpooling with colleagues", "riding an electric scooter"],
    "shopping": ["shopping at farmers markets", "buying clothes online", "shopping with a list",
                 "visiting flea markets", "buying gifts for friends", "shopping at small local shops"],
    "outdoors": ["hiking in the mountains", "camping in a tent", "watching birds in the park",
                 "having a picnic by the lake", "going for a walk in the forest", "stargazing on a clear night"],
    "art": ["painting with watercolors", "sketching in a notebook", "visiting art museums",
            "taking photos with a phone", "making pottery", "doodling during meetings"],
    "languages": ["learning Spanish with an app", "practicing a language with native speakers",
                  "watching films with subtitles", "learning a second language as an adult",
                  "keeping a vocabulary notebook", "speaking a new language while traveling"],
    "coffee and tea": ["brewing coffee at home", "drinking green tea", "visiting new cafes",
                       "cutting back on caffeine", "making iced tea in summer", "trying different coffee beans"],
}


def split_subjects(seed: int = SEED) -> tuple[dict[str, list[str]], dict[str, str]]:
    """Per topic: (train activities, the one eval activity), picked with random.Random(seed)."""
    rng = random.Random(seed)
    train, held = {}, {}
    for topic, subjects in TOPICS.items():
        pick = rng.randrange(len(subjects))
        held[topic] = subjects[pick]
        train[topic] = [s for i, s in enumerate(subjects) if i != pick]
    return train, held


def build_splits(seed: int = SEED) -> tuple[list[str], list[str]]:
    """(train prompts, eval prompts): deterministic, disjoint in phrasing and activity."""
    train_templates, eval_templates = TEMPLATES[:-N_EVAL_TEMPLATES], TEMPLATES[-N_EVAL_TEMPLATES:]
    train_subjects, eval_subjects = split_subjects(seed)
    rng = random.Random(seed + 1)
    train: list[str] = []
    evals: list[str] = []
    for topic in TOPICS:
        pool = [t.format(s=s) for t in train_templates for s in train_subjects[topic]]
        train.extend(rng.sample(pool, N_TRAIN_PER_TOPIC))
        templates = rng.sample(eval_templates, N_EVAL_PER_TOPIC)
        evals.extend(t.format(s=eval_subjects[topic]) for t in templates)
    rng.shuffle(train)
    rng.shuffle(evals)
    return train, evals


def write_splits(out_dir: Path = HERE, seed: int = SEED) -> tuple[Path, Path]:
    train, evals = build_splits(seed)
    paths = out_dir / "train.txt", out_dir / "eval.txt"
    for path, prompts in zip(paths, (train, evals)):
        path.write_text("\n".join(prompts) + "\n", encoding="utf-8")
    return paths


def load_prompts(split: str, prompt_dir: Path = HERE) -> list[str]:
    """The prompts of `split` ("train" or "eval"), one per non-empty line of <split>.txt."""
    if split not in ("train", "eval"):
        raise ValueError(f"split must be 'train' or 'eval', got {split!r}")
    path = prompt_dir / f"{split}.txt"
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check that train.txt/eval.txt are up to date")
    args = parser.parse_args(argv)
    train, evals = build_splits()
    if args.check:
        ok = load_prompts("train") == train and load_prompts("eval") == evals
        print("prompt files are up to date" if ok else "prompt files differ from make_prompts.py; rerun it")
        return 0 if ok else 1
    write_splits()
    print(f"wrote {len(train)} train and {len(evals)} eval prompts to {HERE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
