"""Sentence pools and voices for the synthetic acted corpus.

Pools are split in two: the first part feeds the "train" split and the rest the
"heldout" split, so held-out corpora have unseen sentences as well as unseen
speakers (the hard part of real SER is exactly this shift).
"""

from __future__ import annotations

NEUTRAL_SENTENCES: tuple[str, ...] = (
    "The meeting is scheduled for three o'clock on Tuesday.",
    "Please put the folder on the second shelf.",
    "The train leaves from platform four every hour.",
    "I bought bread, milk and a few apples today.",
    "The report has twelve pages and two tables.",
    "We usually walk to the office along the river.",
    "The library closes at six in the evening.",
    "She moved the chairs into the other room.",
    "The package should arrive by the end of the week.",
    "He wrote the address on the back of the envelope.",
    "The kitchen window faces the garden.",
    "There are four cups on the table by the door.",
    "The bus stops in front of the post office.",
    "Our team reviewed the numbers on Monday morning.",
    "The printer is next to the copy machine.",
    "I parked the car on the north side of the street.",
    "The weather forecast mentions light wind tomorrow.",
    "They painted the fence a pale shade of grey.",
)

EMOTION_SENTENCES: dict[str, tuple[str, ...]] = {
    "happy": (
        "This is the best news I have heard all year!",
        "I am so glad you came, this is wonderful.",
        "We won the prize, I can hardly believe how lucky we are!",
        "What a lovely day, everything is going perfectly.",
        "I love this song, it makes me want to dance.",
        "Thank you so much, this gift is amazing.",
        "I passed the exam and I feel fantastic.",
        "Our baby said her first word today, we are delighted.",
        "The holiday was pure joy from start to finish.",
        "You made me so happy with that surprise party.",
        "Everything worked out great, I am thrilled.",
        "I cannot stop smiling, this is a dream come true.",
    ),
    "sad": (
        "I miss her so much since she passed away.",
        "Nobody came to my birthday, I feel so alone.",
        "We lost the house and I do not know what to do.",
        "It hurts to think we will never see him again.",
        "I tried my best, but it was never enough.",
        "The dog died last night and the house feels empty.",
        "I cried all evening after the phone call.",
        "Everything I worked for is gone now.",
        "My heart is broken and I cannot stop thinking about it.",
        "I feel so tired and hopeless these days.",
        "They said goodbye and I knew it was the last time.",
        "It is a gloomy, miserable end to a lonely year.",
    ),
    "angry": (
        "How dare you lie to me like that!",
        "I am sick and tired of your excuses!",
        "Get out of my office right now!",
        "This is completely unacceptable, I am furious!",
        "You broke it again and you did not even say sorry!",
        "Stop shouting at me, I have had enough!",
        "Who gave you the right to read my letters?",
        "I told you a hundred times, do not touch my things!",
        "That referee is a disgrace, this is outrageous!",
        "You ruined everything, I am so mad at you!",
        "Do not ever speak to my family that way again!",
        "I demand an explanation this instant!",
    ),
    "surprise": (
        "Wow, I did not expect to see you here!",
        "What? You are getting married next week?",
        "No way, is that really a real diamond?",
        "Oh my goodness, the whole team is here!",
        "You built this all by yourself? Incredible!",
        "Really? The shop is giving it away for free?",
        "I cannot believe it, it actually snowed in July!",
        "Whoa, where did all these flowers come from?",
        "Are you serious? He ran the marathon at eighty?",
        "Oh, I had no idea you could speak Japanese!",
        "Wait, the concert is tonight, not tomorrow?",
        "Goodness me, what a sudden turn of events!",
    ),
    "fear": (
        "Did you hear that noise? Someone is in the house.",
        "Please do not leave me alone in the dark.",
        "I am terrified the bridge will collapse.",
        "Something is following us, we have to run.",
        "My hands are shaking, I think we are in danger.",
        "What if the doctor finds something terrible?",
        "Lock the door, I am scared they will come back.",
        "The plane is shaking and I am so frightened.",
        "I cannot breathe, the smoke is everywhere.",
        "Help, please, I think the ice is cracking!",
        "I have a horrible feeling something bad will happen.",
        "Stay quiet, the footsteps are getting closer.",
    ),
    "disgust": (
        "Ugh, this milk smells absolutely rotten.",
        "That is revolting, there is a hair in my soup.",
        "The bathroom was filthy and covered in slime.",
        "I feel sick just looking at that mess.",
        "Yuck, the fridge is full of mould.",
        "Gross, someone left chewing gum under the seat.",
        "The garbage has been rotting in the sun for days.",
        "That meat is crawling with maggots, it is vile.",
        "How can anyone eat something so nauseating?",
        "The sewer water flooded the basement, it stinks.",
        "Eww, the dog rolled in something disgusting.",
        "The whole room reeks of stale sweat and smoke.",
    ),
    "contempt": (
        "Oh please, as if you could ever understand this.",
        "Your so-called plan is beneath my attention.",
        "I expected nothing better from someone like you.",
        "How pathetic, you call that an effort?",
        "Spare me your opinions, they are worthless.",
        "Some people are simply not worth the time.",
        "You are hardly qualified to lecture anyone.",
        "What a ridiculous little idea, truly amateur.",
        "I would not trust him to water a plant.",
        "Naturally, you failed again, how predictable.",
        "Your taste is as cheap as your manners.",
        "They think they are clever, how laughable.",
    ),
}

# Voices are (espeak voice + variant); train and heldout sets share no variant,
# so a held-out corpus is a genuine unseen-speaker test.
TRAIN_SPEAKERS: tuple[str, ...] = (
    "en-us+m1", "en-us+f2", "en-gb+m3", "en-gb+f1",
    "en-gb-scotland+m2", "en-029+f3", "en-gb-x-rp+m4", "en-us+f4",
)
HELDOUT_SPEAKERS: tuple[str, ...] = (
    "en-gb-x-gbclan+m5", "en-gb-x-gbcwmd+f5", "en-us+m6", "en-gb-scotland+m7",
    "en-029+m5", "en-gb-x-rp+f5",
)


def split_pool(pool: tuple[str, ...], split: str) -> tuple[str, ...]:
    """The part of a sentence pool used by a split: train gets 2/3, heldout the rest."""
    cut = (2 * len(pool)) // 3
    if split == "train":
        return pool[:cut]
    if split == "heldout":
        return pool[cut:]
    if split == "all":
        return pool
    raise ValueError(f"unknown split {split!r}; expected train, heldout or all")


def speakers_for(split: str) -> tuple[str, ...]:
    if split == "train":
        return TRAIN_SPEAKERS
    if split == "heldout":
        return HELDOUT_SPEAKERS
    if split == "all":
        return TRAIN_SPEAKERS + HELDOUT_SPEAKERS
    raise ValueError(f"unknown split {split!r}; expected train, heldout or all")
