import time
from html.parser import HTMLParser

from mastok.campaigns.markdown import render, render_consent, sanitise


class Tags(HTMLParser):
    """The tags and attributes a browser would build from the HTML."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.found: list[tuple[str, dict[str, str | None]]] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found.append((tag, dict(attrs)))


def test_task_items_become_clickable_checkboxes() -> None:
    html = render("- [ ] I am over 18\n- [x] Already ticked")
    assert '<input class="task-list-item-checkbox" type="checkbox"> I am over 18' in html
    assert "checked" in html.split("Already")[0].rsplit("<li", 1)[1]
    assert "disabled" not in html


def test_accept_marker_becomes_the_only_button() -> None:
    html = render_consent("Read this.\n\n[accept]I *agree*[/accept] [accept]Twice[/accept]")
    assert '<button id="accept" type="button">I <em>agree</em></button>' in html
    assert html.count("<button") == 1


def test_raw_html_and_scripts_never_pass() -> None:
    html = render_consent(
        '<script>alert(1)</script>\n\n<img src=x onerror="alert(1)">\n\n'
        "[bad](javascript:alert(1)) [good](https://example.org)\n\n"
        '[accept]<b onclick="x()">OK</b>[/accept]'
    )
    tags = Tags(html).found
    assert {tag for tag, _ in tags} <= {"p", "a", "button", "b"}
    assert not any(name.startswith("on") for _, attrs in tags for name in attrs)
    assert [attrs["href"] for tag, attrs in tags if tag == "a"] == ["https://example.org"]
    assert '<a href="https://example.org" rel="noopener noreferrer">good</a>' in html
    assert "&lt;script&gt;" in html


def test_only_checkbox_inputs_survive_sanitising() -> None:
    tags = Tags(render('- [ ] ok\n\n<input type="text" name="x">')).found
    assert [attrs.get("type") for tag, attrs in tags if tag == "input"] == ["checkbox"]


# Go Mastok's tags. Each is recognised in the markdown's text only, and its HTML is mastok's.

ALERT = '<div id="alert-container" class="alert alert-danger" role="alert">'
CODE_ALERT = '<div id="technical-code-alert-container" class="alert alert-danger" role="alert">'
FIELD = '<input type="text" id="technical_code" name="technical_code">'
LINK = '<a href="{}" target="_blank" rel="noopener noreferrer">this link</a>'


def test_accept_is_a_button() -> None:
    assert render_consent("[accept]I agree[/accept]") == (
        '<p><button id="accept" type="button">I agree</button></p>\n'
    )


def test_alert_is_a_hidden_alert_div() -> None:
    assert render_consent("[alert]Please tick *every* box.[/alert]") == (
        f"{ALERT}Please tick <em>every</em> box.</div>\n"
    )


def test_technical_code_is_a_text_field() -> None:
    assert render_consent("Your code: [technical_code]") == f"<p>Your code: {FIELD}</p>\n"


def test_technical_code_alert_is_a_hidden_alert_div() -> None:
    assert render_consent("[technical_code_alert]Wrong code.[/technical_code_alert]") == (
        f"{CODE_ALERT}Wrong code.</div>\n"
    )


def test_new_link_opens_in_a_new_tab() -> None:
    assert render_consent("Test [new_link]https://example.org/a?b=1&c=2[end_link].") == (
        f"<p>Test {LINK.format('https://example.org/a?b=1&amp;c=2')}.</p>\n"
    )


def test_new_link_works_in_every_text_the_other_tags_in_the_consent_only() -> None:
    html = render("[new_link]http://example.org[end_link] [accept]OK[/accept] [technical_code]")
    assert html == (
        f"<p>{LINK.format('http://example.org')} [accept]OK[/accept] [technical_code]</p>\n"
    )
    assert render("[alert]Careful[/alert]") == "<p>[alert]Careful[/alert]</p>\n"


def test_a_go_mastok_consent() -> None:
    consent = (
        "Please read [new_link]https://example.org/info[end_link].\n\n"
        "- [ ] I am over 18\n"
        "- [ ] I agree\n\n"
        "Technical code: [technical_code]\n"
        "[technical_code_alert]\nThe code is wrong.\n[/technical_code_alert]\n\n"
        "[alert]Please tick every box.[/alert]\n\n"
        "[accept]Accept[/accept]"
    )
    assert render_consent(consent) == (
        f"<p>Please read {LINK.format('https://example.org/info')}.</p>\n"
        '<ul class="contains-task-list">\n'
        '<li class="task-list-item enabled">'
        '<input class="task-list-item-checkbox" type="checkbox"> I am over 18</li>\n'
        '<li class="task-list-item enabled">'
        '<input class="task-list-item-checkbox" type="checkbox"> I agree</li>\n'
        "</ul>\n"
        f"<p>Technical code: {FIELD}</p>\n"
        f"{CODE_ALERT}The code is wrong.</div>\n"
        f"{ALERT}Please tick every box.</div>\n"
        '<p><button id="accept" type="button">Accept</button></p>\n'
    )


def test_an_alert_within_a_paragraph_splits_it() -> None:
    assert render_consent("Read this.\n[alert]Tick it.[/alert] Then go on.") == (
        f"<p>Read this.</p>\n{ALERT}Tick it.</div>\n<p>Then go on.</p>\n"
    )


def test_alerts_may_hold_links_only() -> None:
    html = render_consent(
        "[alert]See [new_link]https://example.org[end_link] [technical_code] "
        "[accept]OK[/accept][/alert]"
    )
    assert html == (
        f"{ALERT}See {LINK.format('https://example.org')} [technical_code] "
        "[accept]OK[/accept]</div>\n"
    )


def test_tags_with_an_id_are_taken_once() -> None:
    html = render_consent(
        "[technical_code] [technical_code]\n\n[alert]a[/alert]\n\n[alert]b[/alert]"
    )
    assert html.count('id="technical_code"') == 1
    assert html.count('id="alert-container"') == 1
    assert "[technical_code]" in html
    assert "<p>[alert]b[/alert]</p>" in html


def test_new_link_takes_http_and_https_only() -> None:
    for url in (
        "javascript:alert(1)",
        "JavaScript:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "vbscript:x",
        "/relative/path",
        "relative.html",
        "//example.org/no-scheme",
        "https:example.org",
        "https://",
        "https://exa mple.org",
        "mailto:someone@example.org",
    ):
        html = render_consent(f"Go [new_link]{url}[end_link]")
        assert "<a" not in html, url
        assert "[new_link]" in html and "[end_link]" in html, url
        assert "href" not in html, url


def test_new_link_takes_one_plain_url() -> None:
    assert "<a" not in render_consent("[new_link]https://*example*.org[end_link]")
    assert "<a" not in render_consent("[new_link]`https://example.org`[end_link]")
    assert "<a" not in render_consent("[new_link] [end_link]")
    assert render_consent('[new_link]https://example.org/"><script>[end_link]') == (
        f"<p>{LINK.format('https://example.org/%22%3E%3Cscript%3E')}</p>\n"
    )


def test_tags_in_code_links_and_images_stay_text() -> None:
    html = render_consent(
        '`[accept]a[/accept]` [t](https://example.org "[alert]b[/alert]")\n\n'
        "![[technical_code]](x.png) [see [accept]c[/accept]](https://example.org)\n\n"
        "<https://example.org/[technical_code]>\n\n"
        "    [alert]code block[/alert]"
    )
    assert "<button" not in html and "<div" not in html and "<input" not in html
    assert "<code>[accept]a[/accept]</code>" in html
    assert 'title="[alert]b[/alert]"' in html
    assert 'alt="[technical_code]"' in html
    assert ">see [accept]c[/accept]</a>" in html
    assert "<pre><code>[alert]code block[/alert]\n</code></pre>" in html


def test_escaped_tags_stay_text() -> None:
    assert render_consent("\\[accept]No[/accept]") == "<p>[accept]No[/accept]</p>\n"


def test_unclosed_nested_and_crossing_tags_stay_text() -> None:
    for text in (
        "[accept]never closed",
        "closed only[/accept]",
        "[alert]a [alert]b[/alert] c[/alert]",
        "[accept]a [accept]b[/accept] c[/accept]",
        "[alert]a [technical_code_alert]b[/technical_code_alert][/alert]",
        "[accept]a [technical_code][/accept]",
        "[accept]a *b[/accept]* c",
        "*[alert]in emphasis[/alert]*",
        "# [alert]in a heading[/alert]",
        "[alert]one paragraph\n\nanother[/alert]",
        "[alert] [/alert] [accept][/accept]",
        "[new_link]https://example.org",
    ):
        html = render_consent(text)
        for element in ("<button", "<div", "<input", "<a"):
            assert element not in html, (text, html)


def test_an_accept_smuggled_into_an_attribute_stays_there_as_text() -> None:
    # Issue 13: replacing `[accept]` in the HTML put the button inside the image's attribute.
    consent = (
        '![i](x.png "[accept]Go[/accept]") ![[accept]Go[/accept]](y.png)\n\n'
        "- [ ] I am over 18\n\n"
        '[accept]I agree" onclick="alert(1)[/accept]'
    )
    assert render_consent(consent) == (
        '<p><img src="x.png" alt="i" title="[accept]Go[/accept]"> '
        '<img src="y.png" alt="[accept]Go[/accept]"></p>\n'
        '<ul class="contains-task-list">\n'
        '<li class="task-list-item enabled">'
        '<input class="task-list-item-checkbox" type="checkbox"> I am over 18</li>\n'
        "</ul>\n"
        '<p><button id="accept" type="button">I agree" onclick="alert(1)</button></p>\n'
    )


def test_the_sanitiser_keeps_only_mastoks_attribute_values() -> None:
    html = sanitise(
        '<div id="main" class="x" role="button" onclick="x()">a</div>'
        '<button id="go" type="submit" form="f">b</button>'
        '<input type="password" id="other" name="password" value="v">'
        '<input class="task-list-item-checkbox other" type="checkbox" checked>'
        '<a href="https://example.org" target="_top">c</a>'
        '<a href="javascript:alert(1)" target="_blank">d</a>'
    )
    assert html == (
        "<div>a</div><button>b</button><input>"
        '<input checked="" type="checkbox">'
        '<a href="https://example.org" rel="noopener noreferrer">c</a>'
        '<a target="_blank" rel="noopener noreferrer">d</a>'
    )


def test_many_unclosed_tags_render_in_linear_time() -> None:
    started = time.monotonic()
    render_consent("[accept]x [new_link]y " * 20_000)
    # About 0.5 s; searching anew for each tag's end took over a minute.
    assert time.monotonic() - started < 5
