"""Attribute extraction on realistic English and French marketplace titles."""
import pytest

from fashion_data.attributes import Vocabulary, VocabularyError, load_vocabulary, normalize_text

VOCAB = load_vocabulary()

# (title, expected attributes) - written by hand from what a human reader would label.
TITLES = [
    ("Women's Kente Maxi Dress with Long Sleeves - Multicolour",
     {"wearer": "women", "fabric": "kente", "length": "maxi", "garment": "dress", "sleeve": "long", "colour": "multicolour"}),
    ("Robe longue en pagne wax, manches courtes, femme",
     {"garment": "dress", "length": "maxi", "fabric": "ankara", "sleeve": "short", "wearer": "women"}),
    ("Sleeveless Ankara jumpsuit", {"sleeve": "sleeveless", "fabric": "ankara", "garment": "jumpsuit"}),
    ("Dress shirt for men, white", {"garment": "shirt", "wearer": "men", "colour": "white"}),          # not a dress
    ("Ankara shirt dress", {"fabric": "ankara", "garment": "dress"}),                                  # not a shirt
    ("Men's Agbada 3-piece set, royal blue", {"wearer": "men", "garment": "agbada", "colour": "blue"}),
    ("Mud cloth skirt, no lace", {"fabric": "bogolan", "garment": "skirt"}),                           # negated lace
    ("Dress without lace; kente", {"garment": "dress", "fabric": "kente"}),
    ("Wax dress, no lace", {"fabric": "ankara", "garment": "dress"}),
    ("Dress with no sleeves and no lace", {"garment": "dress", "sleeve": "sleeveless"}),
    ("Sans dentelle, robe noire", {"garment": "dress", "colour": "black"}),
    ("Dashiki shirt red and gold", {"garment": "dashiki", "colour": "multicolour"}),
    ("T-Shirt imprimé wax", {"garment": "t_shirt", "fabric": "ankara"}),
    ("Ensemble jupe et haut en bazin riche, bleu", {"garment": "two_piece", "fabric": "bazin", "colour": "blue"}),
    ("Kids gele headwrap", {"wearer": "children", "garment": "headwrap"}),
    ("3/4 sleeve midi dress in adire", {"sleeve": "three_quarter", "length": "midi", "garment": "dress", "fabric": "adire"}),
    ("Vlisco Hollandais wax print wrap skirt", {"fabric": "ankara", "garment": "skirt"}),
    ("Boubou brodé homme en bazin", {"garment": "kaftan", "wearer": "men", "fabric": "bazin"}),
    ("ROBE COURTE SANS MANCHES EN DENTELLE NOIRE", {"garment": "dress", "length": "mini", "sleeve": "sleeveless",
                                                     "fabric": "lace", "colour": "black"}),
    ("Chemise manches longues homme kitenge", {"garment": "shirt", "sleeve": "long", "wearer": "men", "fabric": "kitenge"}),
    ("Shweshwe knee length dress for ladies", {"fabric": "shweshwe", "length": "knee", "garment": "dress", "wearer": "women"}),
    ("Aso-oke gele and ipele, wine", {"fabric": "aso_oke", "garment": "headwrap", "colour": "red"}),
    ("Unisex dashiki for men and women", {"wearer": "unisex", "garment": "dashiki"}),
    ("Kaftan with short sleeves", {"garment": "kaftan", "sleeve": "short"}),
    ("Long sleeve top", {"sleeve": "long", "garment": "top"}),                                         # "long" is not maxi
    ("Off-shoulder Ankara peplum top", {"sleeve": "sleeveless", "fabric": "ankara", "garment": "top"}),
    ("Pantalon palazzo en wax pour femme", {"garment": "trousers", "fabric": "ankara", "wearer": "women"}),
    ("Shorts", {"garment": "shorts"}),                                                                  # not "short"
    ("Ankara dresses for girls", {"fabric": "ankara", "garment": "dress", "wearer": "children"}),       # plural
    ("Beautiful outfit", {}),
    ("Topless? No: toppings", {}),                                                                      # whole words only
    ("Mudcloth jacket, mustard and black", {"fabric": "bogolan", "garment": "jacket", "colour": "multicolour"}),
    ("Plain white kaftan", {"fabric": "plain", "colour": "white", "garment": "kaftan"}),
]


@pytest.mark.parametrize("title, expected", TITLES, ids=[t for t, _ in TITLES])
def test_titles(title, expected):
    assert VOCAB.extract(title) == expected


def test_captions():
    assert VOCAB.caption(VOCAB.extract(TITLES[0][0])) == "women's maxi dress, long sleeves, kente, multicolour"
    assert VOCAB.caption({"wearer": "men", "colour": "white"}) == "men's outfit, white"
    assert VOCAB.caption({"fabric": "bogolan"}) == "bogolan mudcloth"
    assert VOCAB.caption({}) == ""


def test_normalize_text_and_explicit_values():
    assert normalize_text("  Robe Élégante—T-Shirt 3/4  ") == "robe elegante t shirt 3 4"
    assert VOCAB.normalize_value("fabric", "Kenté") == "kente"
    assert VOCAB.normalize_value("sleeve", "three-quarter sleeves") == "three_quarter"
    assert VOCAB.normalize_value("garment", "Jupe") == "skirt"
    assert VOCAB.normalize_value("garment", "spaceship") is None
    assert VOCAB.normalize_value("mood", "happy") is None


def test_every_value_has_a_caption_and_its_key_matches_itself():
    for attr, values in VOCAB.attributes.items():
        for key, value in values.items():
            assert value.caption
            if attr != "colour" or key != "multicolour":
                assert VOCAB.extract(key.replace("_", " ")).get(attr) == key, (attr, key)


def test_vocabulary_errors_say_what_to_fix(tmp_path):
    with pytest.raises(VocabularyError, match="means both garment=a and garment=b"):
        Vocabulary({"attributes": {"garment": {"values": {"a": {"synonyms": ["x"]}, "b": {"synonyms": ["x"]}}}}})
    with pytest.raises(VocabularyError, match="needs a non-empty 'values:'"):
        Vocabulary({"attributes": {"garment": {}}})
    with pytest.raises(VocabularyError, match="compound 'y' sets unknown"):
        Vocabulary({"attributes": {"garment": {"values": {"a": {}}}}, "compounds": {"y": {"garment": "zz"}}})
    bad = tmp_path / "v.yaml"
    bad.write_text("attributes: [unclosed")
    with pytest.raises(VocabularyError, match="not valid YAML"):
        load_vocabulary(bad)
    bare_no = tmp_path / "bare.yaml"
    bare_no.write_text("negators: [no]\nattributes:\n  garment:\n    values:\n      dress: {}\n")
    with pytest.raises(VocabularyError, match="put quotes around"):
        load_vocabulary(bare_no)
    with pytest.raises(VocabularyError, match="not found"):
        load_vocabulary(tmp_path / "missing.yaml")


def test_user_vocabulary_can_add_values(tmp_path):
    custom = tmp_path / "mine.yaml"
    custom.write_text("negators: ['no']\nattributes:\n  garment:\n    values:\n"
                      "      wrapper: {caption: wrapper, synonyms: [iro, 'wrapper cloth']}\n")
    vocab = load_vocabulary(custom)
    assert vocab.extract("Iro and buba, no wrapper cloth") == {"garment": "wrapper"}
    assert vocab.extract("no iro") == {}
