from __future__ import annotations

import re

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from exosphere_nb.errors import BadRequestError, PlaceholderError
from exosphere_nb.placeholders import Ref, Template, parse

EXPECTED = "expected '${{ <identifier>.outputs.<field> }}' or '${{ store.<key> }}'"


# --- examples: valid forms ---------------------------------------------------------------------


def test_plain_text_is_constant() -> None:
    t = parse("hello world")
    assert t == Template(("hello world",))
    assert t.is_constant
    assert t.refs == ()
    assert t.render(lambda r: pytest.fail("constant templates never resolve")) == "hello world"


def test_empty_string() -> None:
    t = parse("")
    assert t.parts == ()
    assert t.is_constant
    assert t.render(lambda r: "x") == ""
    assert str(t) == ""


@pytest.mark.parametrize(
    "text",
    ["${{ a.outputs.b }}", "${{a.outputs.b}}", "${{   a.outputs.b\t}}", "${{\n a.outputs.b \n}}"],
)
def test_output_ref_whitespace_is_free(text: str) -> None:
    t = parse(text)
    assert t.parts == (Ref("a", "b"),)
    assert str(t) == "${{ a.outputs.b }}"


@pytest.mark.parametrize("text", ["${{ store.k }}", "${{store.k}}", "${{  store.k   }}"])
def test_store_ref(text: str) -> None:
    t = parse(text)
    assert t.parts == (Ref(None, "k"),)
    assert t.refs[0].is_store
    assert t.store_refs == (Ref(None, "k"),)
    assert t.output_refs == ()


def test_store_key_named_outputs_is_a_store_ref() -> None:
    assert parse("${{ store.outputs }}").parts == (Ref(None, "outputs"),)


def test_identifiers_may_hold_dashes_digits_and_underscores() -> None:
    t = parse("${{ _node-1.outputs.my-field_2 }}")
    assert t.parts == (Ref("_node-1", "my-field_2"),)


def test_mixed_text_and_several_refs() -> None:
    t = parse("Hi ${{ a.outputs.name }}, key=${{ store.k }}${{ b.outputs.x }}!")
    assert t.parts == ("Hi ", Ref("a", "name"), ", key=", Ref(None, "k"), Ref("b", "x"), "!")
    assert t.refs == (Ref("a", "name"), Ref(None, "k"), Ref("b", "x"))
    assert t.output_refs == (Ref("a", "name"), Ref("b", "x"))
    assert t.store_refs == (Ref(None, "k"),)
    assert not t.is_constant
    values = {Ref("a", "name"): "Ann", Ref(None, "k"): "v", Ref("b", "x"): "X"}
    assert t.render(values.__getitem__) == "Hi Ann, key=vX!"


def test_single_ref_renders_to_resolved_value_verbatim() -> None:
    t = parse("${{ a.outputs.b }}")
    assert t.render(lambda r: "  raw value  ") == "  raw value  "


@pytest.mark.parametrize("text", ["$", "cost: $5", "{{ a.outputs.b }}", "$ {{ a.outputs.b }}", "${ a }", "}}", "$${"])
def test_lone_dollar_and_bare_braces_are_text(text: str) -> None:
    assert parse(text) == Template((text,))


def test_text_after_closing_braces_is_kept() -> None:
    assert parse("${{ a.outputs.b }}}").parts == (Ref("a", "b"), "}")
    assert parse("$${{ a.outputs.b }}").parts == ("$", Ref("a", "b"))


def test_ref_str_is_canonical() -> None:
    assert str(Ref("a", "b")) == "${{ a.outputs.b }}"
    assert str(Ref(None, "k")) == "${{ store.k }}"
    assert not Ref("a", "b").is_store


def test_parse_is_cached() -> None:
    text = "cached ${{ a.outputs.b }}"
    assert parse(text) is parse(text)


def test_templates_are_hashable_and_compare_by_parts() -> None:
    assert hash(parse("x ${{ a.outputs.b }}")) == hash(Template(("x ", Ref("a", "b"))))
    assert parse("x ${{ a.outputs.b }}") == Template(("x ", Ref("a", "b")))


# --- examples: errors --------------------------------------------------------------------------


def _error(text: str) -> str:
    with pytest.raises(PlaceholderError) as info:
        parse(text)
    return str(info.value)


def test_placeholder_error_is_a_bad_request() -> None:
    with pytest.raises(BadRequestError):
        parse("${{ }}")


def test_wrong_shape_message_is_precise() -> None:
    assert _error("abcd${{ a.inputs.b }}") == f"bad placeholder '${{{{ a.inputs.b }}}}' at offset 4: {EXPECTED}"


@pytest.mark.parametrize(
    "snippet",
    [
        "${{ a.inputs.b }}",
        "${{ a.outputs }}",
        "${{ store }}",
        "${{ a.b.c.d }}",
        "${{ a }}",
        "${{ a.outputs.b.c }}",
        "${{ store.a.b }}",
        "${{ a..b }}",
        "${{ a.OUTPUTS.b }}",
    ],
)
def test_wrong_shapes(snippet: str) -> None:
    message = _error(f"xy {snippet} z")
    assert message == f"bad placeholder {snippet!r} at offset 3: {EXPECTED}"


@pytest.mark.parametrize("snippet", ["${{}}", "${{ }}", "${{ \n\t }}"])
def test_empty_placeholder(snippet: str) -> None:
    assert _error(f"ab{snippet}") == f"empty placeholder {snippet!r} at offset 2: {EXPECTED}"


@pytest.mark.parametrize(
    ("text", "offset"),
    [("${{ a.outputs.b", 0), ("text ${{", 5), ("ok ${{ a.outputs.b }} then ${{ store.k }", 27)],
)
def test_unterminated(text: str, offset: int) -> None:
    message = _error(text)
    assert message.startswith(f"unterminated placeholder {text[offset:]!r} at offset {offset}")
    assert message.endswith("no closing '}}'")


def test_unterminated_snippet_is_truncated() -> None:
    text = "${{ a.outputs.b " + "x" * 500
    message = _error(text)
    assert "..." in message
    assert len(message) < 200


@pytest.mark.parametrize(
    ("snippet", "what", "name"),
    [
        ("${{ a b.outputs.c }}", "identifier", "a b"),
        ("${{ 1a.outputs.c }}", "identifier", "1a"),
        ("${{ a.outputs.c$ }}", "field", "c$"),
        ("${{ a.outputs.-c }}", "field", "-c"),
        ("${{ store.k/ey }}", "store key", "k/ey"),
        ("${{ store.é }}", "store key", "é"),
        ("${{ a .outputs.b }}", "identifier", "a "),
        ("${{ .outputs.b }}", "identifier", ""),
        ("${{ store. }}", "store key", ""),
    ],
)
def test_bad_characters(snippet: str, what: str, name: str) -> None:
    message = _error(snippet)
    assert message.startswith(f"bad placeholder {snippet!r} at offset 0: {what} {name!r} must match")


def test_store_cannot_be_used_as_a_node() -> None:
    message = _error("${{ store.outputs.k }}")
    assert message.startswith("bad placeholder '${{ store.outputs.k }}' at offset 0: 'store' is the run store")


def test_error_reports_first_bad_placeholder_after_good_ones() -> None:
    assert "at offset 19" in _error("${{ a.outputs.b }} ${{ nope }}")


def test_nested_open_is_rejected() -> None:
    assert _error("${{ a ${{ b.outputs.c }}").startswith("bad placeholder '${{ a ${{ b.outputs.c }}' at offset 0")


@pytest.mark.parametrize(("value", "name"), [(5, "int"), (None, "NoneType"), ([1], "list"), ({"a": 1}, "dict")])
def test_non_string_is_rejected(value: object, name: str) -> None:
    with pytest.raises(PlaceholderError, match=re.escape(f"input value must be a string, got {name}")):
        parse(value)  # type: ignore[arg-type]


# --- properties --------------------------------------------------------------------------------

names = st.from_regex(r"\A[A-Za-z_][A-Za-z0-9_\-]{0,8}\Z")
refs = st.one_of(
    st.builds(Ref, names.filter(lambda n: n != "store"), names),
    st.builds(lambda k: Ref(None, k), names),
)
texts = st.text(min_size=1, max_size=12).filter(lambda s: "${{" not in s)


def _normalised(parts: list[str | Ref]) -> tuple[str | Ref, ...]:
    out: list[str | Ref] = []
    for p in parts:
        if isinstance(p, str) and out and isinstance(out[-1], str):
            out[-1] += p
        else:
            out.append(p)
    return tuple(out)


templates = st.lists(st.one_of(texts, refs), max_size=8).map(_normalised).map(Template)


@given(templates)
def test_round_trip(t: Template) -> None:
    # Merged text chunks could spell `${{` across a boundary (`$` + `{{`); such templates are not text.
    assume(all("${{" not in p for p in t.parts if isinstance(p, str)))
    assert parse(str(t)) == t


@given(templates)
def test_render_replaces_each_placeholder(t: Template) -> None:
    assume(all("${{" not in p for p in t.parts if isinstance(p, str)))

    def resolve(r: Ref) -> str:
        return f"<{r.identifier}|{r.field}>"

    expected = "".join(p if isinstance(p, str) else resolve(p) for p in t.parts)
    assert parse(str(t)).render(resolve) == expected
    assert t.render(resolve) == expected


@given(st.text())
def test_text_without_placeholders_is_constant(text: str) -> None:
    assume("${{" not in text)
    t = parse(text)
    assert t.is_constant
    assert t == Template((text,) if text else ())
    assert str(t) == text
    assert t.render(lambda r: "never") == text


@given(st.text(alphabet="${} ab.outputsre", max_size=30))
def test_parse_never_raises_anything_but_placeholder_error(text: str) -> None:
    try:
        t = parse(text)
    except PlaceholderError:
        return
    assert parse(str(t)) == t
