"""The panel's quick inputs render exactly what WTForms' own widgets render."""

from __future__ import annotations

import re
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from markupsafe import Markup
from wtforms.widgets import html_params

from flask_alisms.web.forms import html_attributes

from .conftest import Host

KEYS = st.from_regex(r"(data_|aria_)?[a-z][a-z_]{0,8}", fullmatch=True)
VALUES = st.one_of(
    st.booleans(),
    st.integers(),
    st.text(),
    st.text(alphabet='<>&"\' ab').map(Markup),  # already "safe" text that still holds quotes
)


@given(st.dictionaries(KEYS, VALUES, max_size=6))
def test_attributes_are_the_ones_wtforms_writes(attributes: dict[str, Any]) -> None:
    assert html_attributes(**attributes) == html_params(**attributes)
    assert isinstance(html_attributes(**attributes), Markup)


def test_a_hostile_value_is_escaped() -> None:
    written = html_attributes(value='"><script>alert(1)</script>', checked=True, hidden=False)
    assert written == 'checked value="&#34;&gt;&lt;script&gt;alert(1)&lt;/script&gt;"'


def test_the_parameters_page_renders_each_input_as_wtforms_would(
    host: Host, monkeypatch: Any
) -> None:
    host.set_params(aliyun__sms__sign_name='Sign "quoted" <b>')
    quick = host.client("root").get("/alisms/admin/").get_data(as_text=True)
    monkeypatch.setattr(
        "flask_alisms.web.forms._QuickAttributes.html_params", staticmethod(html_params)
    )
    plain = host.client("root").get("/alisms/admin/").get_data(as_text=True)
    assert 'value="Sign &#34;quoted&#34; &lt;b&gt;"' in quick
    token = re.compile(r'name="csrf_token" type="hidden" value="[^"]*"')
    assert token.sub("", quick) == token.sub("", plain)
