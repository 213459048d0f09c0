"""Nave's Topical Bible: the zLD reader on the real module and on a hand-made one, and the TEI reference parser."""

import struct
import zlib
from collections import Counter

import pytest

from corpus import naves
from corpus.errors import BadInput


@pytest.fixture(scope="module")
def entries():
    return naves.read_entries()


@pytest.fixture(scope="module")
def parsed(entries):
    return naves.topics(entries)


def _topic(parsed, key):
    return next(t for t in parsed[0] if t.key == key)


def test_real_module_has_the_whole_index(entries):
    # 5,322 index records, two keys (REVERENCE, SIN) twice: 5,320 keys.
    assert len(entries) == 5320
    assert list(entries)[:3] == ["AARON", "ABADDON", "ABAGTHA"]
    assert entries["FAITH"].startswith('<entryFree n="FAITH">')
    assert entries["FAITH"].rstrip().endswith("</entryFree>")


def test_known_topics_and_refs(parsed):
    abba = _topic(parsed, "ABBA")
    assert [(s.path, s.refs) for s in abba.subtopics] == [(("Father",), ("Mark.14.36", "Rom.8.15", "Gal.4.6"))]
    faith = _topic(parsed, "FAITH")
    general = faith.subtopics[0]
    assert general.path == ("General scriptures concerning",)
    assert "Eph.2.8" in general.refs and "Heb.11.1-Heb.11.39" in general.refs
    noah = next(s for s in faith.subtopics if s.path[-1] == "Noah, in building the ark")
    assert noah.path == ("INSTANCES OF", "Noah, in building the ark")
    assert noah.refs == ("Gen.6.14-Gen.6.22", "Heb.11.7")
    # `<ref osisRef="Jude.1.1">Jude 1</ref>:21` under FAITH / IN CHRIST: the printed verse is the one taken.
    in_christ = next(s for s in faith.subtopics if s.path == ("IN CHRIST",))
    assert "Jude.1.21" in in_christ.refs and "Jude.1.1" not in in_christ.refs
    # A plain <lb/> line after a list hangs under the last item (Moses).
    moses = next(s for s in faith.subtopics if s.path[-1] == "In espousing the cause of his people")
    assert moses.path == ("INSTANCES OF", "Moses", "In espousing the cause of his people")


def test_duplicate_keys_are_merged_not_lost(parsed):
    sin = _topic(parsed, "SIN")
    labels = [s.path[0] for s in sin.subtopics]
    assert "Desert of, a wilderness between Elim and Sinai" in labels  # the first SIN entry (a place)
    assert "MISCELLANY OF MINOR SUB-TOPICS" in labels  # the second (the doctrine)


def test_parse_counts_add_up(parsed):
    _, st = parsed
    used = st["verses"] + st["verse_ranges"] + st["chapter_only"] + st["one_chapter_recovered"]
    unparsed = sum(v for k, v in st.items() if k.startswith("unparsed_"))
    assert used + unparsed == st["refs"]
    assert 70_000 < st["refs"] < 90_000 and st["topics"] == 5320
    assert 0 < unparsed < 100  # a handful of misparsed names; the parser must not silently lose more
    assert sum(len(s.unparsed) for t in parsed[0] for s in t.subtopics) == unparsed


SNIPPET = """<entryFree n="TEST">
<def>
<lb/>\u2192 HEAD, of things <ref osisRef="Rom.5.6-Rom.5.8">Ro 5:6-8</ref>; <ref osisRef="Matt.26.75-Matt.27.2">Mt 26:75-27:2</ref>; <ref osisRef="Rom.8">8</ref>
<list>
<item>Item one <ref osisRef="Jude.1.1">Jude 1</ref>:3,5-6</item>
<item>See <ref target="Nave:OTHER">OTHER</ref></item>
<item>Weird <ref osisRef="Mic.2">Micah 2</ref>Ch 34:20; <ref osisRef="Wis.1.2">Wis 1:2</ref>; <ref osisRef="Rom.5.9-Rom.5.2">bad</ref>; <ref osisRef="Phlm.1.1">Phm 1</ref>; <ref osisRef="Rom.x.1">?</ref></item>
</list>
<lb/>Under the item <ref osisRef="John.3.16">Joh 3:16</ref>
<lb/>\u2192 SECOND <ref osisRef="Acts.1.1">Ac 1:1</ref></def>
</entryFree>"""


def test_parser_on_a_handwritten_entry():
    counts = Counter()
    t = naves.parse_entry("TEST", SNIPPET, counts)
    paths = [s.path for s in t.subtopics]
    assert paths == [("HEAD, of things",), ("HEAD, of things", "Item one"), ("HEAD, of things", "See OTHER"),
                     ("HEAD, of things", "Weird"), ("HEAD, of things", "Weird", "Under the item"), ("SECOND",)]
    head, one, see, weird, under, second = t.subtopics
    assert head.refs == ("Rom.5.6-Rom.5.8", "Matt.26.75-Matt.27.2") and head.chapter_refs == ("Rom.8",)
    assert one.refs == ("Jude.1.3", "Jude.1.5-Jude.1.6")
    assert see.see == ("OTHER",) and see.refs == ()
    assert weird.refs == () and weird.unparsed == ("Mic.2", "Wis.1.2", "Rom.5.9-Rom.5.2", "Phlm.1.1", "Rom.x.1")
    assert under.refs == ("John.3.16",) and second.refs == ("Acts.1.1",)
    assert [s.ordinal for s in t.subtopics] == [1, 2, 3, 4, 5, 6]
    assert counts == Counter(refs=11, verses=2, verse_ranges=2, chapter_only=1, one_chapter_recovered=1,
                             see_also=1, unparsed_name_misparse=1, unparsed_noncanonical_book=1,
                             unparsed_malformed=2, unparsed_one_chapter=1)


def test_expand_ranges_across_chapters_and_gaps():
    ids = ["Matt.26.74", "Matt.26.75", "Matt.27.1", "Matt.27.2", "Matt.27.3", "Acts.8.36", "Acts.8.38"]
    vl = naves.VerseList.of(ids)
    got, c = naves.expand(["Matt.26.75-Matt.27.2", "Acts.8.37", "Acts.8.36-Acts.8.37", "Gen.1.1", "Matt.27.1"], vl)
    assert got == ["Matt.26.75", "Matt.27.1", "Matt.27.2", "Acts.8.36"]  # deduplicated, first-mention order
    assert c == Counter(expanded=3, not_in_corpus=1, out_of_scope=1)
    known = frozenset(ids + ["Acts.8.37"])
    got, c = naves.expand(["Matt.26.1-Matt.26.75", "Matt.27.2"], vl, known)  # Matt.26.1 unknown: refused whole
    assert got == ["Matt.27.2"] and c["no_such_verse"] == 1
    with pytest.raises(ValueError):
        naves.VerseList.of(["Matt.1.2", "Matt.1.1"])


def _write_module(folder, blocks):
    """A zLD module in the layout read_entries expects: blocks = [[(key, tei), ...], ...]."""
    idx, dat, zdx, zdt = bytearray(), bytearray(), bytearray(), bytearray()
    for b, items in enumerate(blocks):
        bodies = [tei.encode() + b"\0" for _, tei in items]
        table, off = b"", 4 + 8 * len(items)
        for body in bodies:
            table += struct.pack("<II", off, len(body))
            off += len(body)
        comp = zlib.compress(struct.pack("<I", len(items)) + table + b"".join(bodies))
        zdx += struct.pack("<II", len(zdt), len(comp))
        zdt += comp
        for e, (key, _) in enumerate(items):
            rec = key.encode() + b"\r\n" + struct.pack("<II", b, e)
            idx += struct.pack("<II", len(dat), len(rec))
            dat += rec + b"\r\n"
    for ext, data in (("idx", idx), ("dat", dat), ("zdx", zdx), ("zdt", zdt)):
        (folder / f"nave.{ext}").write_bytes(bytes(data))


def test_reader_on_a_handmade_module(tmp_path):
    _write_module(tmp_path, [[("A", "<e>a</e>"), ("B", "<e>b</e>")], [("C", "<e>c</e>"), ("A", "<e>a2</e>")]])
    assert naves.read_entries(tmp_path) == {"A": "<e>a</e>\n<e>a2</e>", "B": "<e>b</e>", "C": "<e>c</e>"}


def test_reader_refuses_broken_modules(tmp_path):
    with pytest.raises(BadInput, match="not found"):
        naves.read_entries(tmp_path)
    _write_module(tmp_path, [[("A", "<e>a</e>")]])
    (tmp_path / "nave.zdx").write_bytes(b"\0\0\0\0")  # half a record
    with pytest.raises(BadInput, match="nave.zdx.*truncated"):
        naves.read_entries(tmp_path)


def test_the_module_is_found_where_sword_path_points(tmp_path, monkeypatch):
    """Seen: the Bibles followed $SWORD_PATH, Nave's stayed at /usr/share/sword."""
    from corpus.errors import BadInput

    monkeypatch.setenv("SWORD_PATH", str(tmp_path))
    with pytest.raises(BadInput, match=str(tmp_path)):
        naves.read_entries()
