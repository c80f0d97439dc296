"""Test helpers of the listening-report tests: a strict HTML reader of `report.html`."""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


@dataclass
class Element:
    tag: str
    attrs: dict[str, str]
    ancestors: list[tuple[str, dict[str, str]]]
    text: str = ""

    def inside(self, tag: str, **attrs: str) -> dict[str, str] | None:
        """The attributes of the nearest ancestor `tag` with these attributes, or None."""
        for a_tag, a_attrs in reversed(self.ancestors):
            if a_tag == tag and all(a_attrs.get(k) == v for k, v in attrs.items()):
                return a_attrs
        return None

    @property
    def classes(self) -> set[str]:
        return set(self.attrs.get("class", "").split())


@dataclass
class Page:
    doctype: str | None = None
    elements: list[Element] = field(default_factory=list)

    def find(self, tag: str) -> list[Element]:
        return [e for e in self.elements if e.tag == tag]


class StrictReader(HTMLParser):
    """Parses a page and fails on any unclosed, stray or mismatched tag."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.page = Page()
        self.stack: list[Element] = []

    def handle_decl(self, decl: str) -> None:
        self.page.doctype = decl

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, {k: v or "" for k, v in attrs}, [(e.tag, e.attrs) for e in self.stack])
        self.page.elements.append(element)
        if tag not in VOID:
            self.stack.append(element)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.page.elements.append(
            Element(tag, {k: v or "" for k, v in attrs}, [(e.tag, e.attrs) for e in self.stack])
        )

    def handle_endtag(self, tag: str) -> None:
        if tag in VOID:
            raise AssertionError(f"end tag of the void element <{tag}>")
        if not self.stack or self.stack[-1].tag != tag:
            open_tag = self.stack[-1].tag if self.stack else None
            raise AssertionError(f"</{tag}> closes <{open_tag}>")
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        for element in self.stack:
            element.text += data


def parse_page(text: str) -> Page:
    reader = StrictReader()
    reader.feed(text)
    reader.close()
    assert not reader.stack, f"unclosed tags: {[e.tag for e in reader.stack]}"
    assert reader.page.doctype is not None and reader.page.doctype.lower() == "doctype html"
    return reader.page


def validation_rows(page: Page) -> list[dict[str, object]]:
    """The validations table: per row its epoch, whether it is marked best, {metric key: data-value}, and the
    text of its change against the previous best."""
    rows: dict[str, dict[str, object]] = {}
    for element in page.elements:
        if (
            element.tag == "tr"
            and element.inside("table", id="validations")
            and "data-epoch" in element.attrs
        ):
            rows[element.attrs["data-epoch"]] = {
                "epoch": int(element.attrs["data-epoch"]),
                "best": "best" in element.classes,
                "values": {},
            }
        if element.tag == "td" and "change" in element.classes:
            row = element.inside("tr")
            assert row is not None
            rows[row["data-epoch"]]["change"] = element.text
        if element.tag == "td" and "data-value" in element.attrs:
            row = element.inside("tr")
            assert row is not None
            values = rows[row["data-epoch"]]["values"]
            assert isinstance(values, dict)
            values[element.attrs["data-key"]] = element.attrs["data-value"]
    return list(rows.values())
