"""The reviewers' dashboard: ``streamlit run dashboards/app.py`` with ``AUDITKIT_HOME`` set to the store.

Each page is a script in ``views/``; they only present what the store holds (see ``auditkit.dashboard``).
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

HERE = Path(__file__).parent

st.set_page_config(page_title="auditkit", layout="wide")
pages = [
    st.Page(str(HERE / "views" / "overview.py"), title="Overview", default=True),
    st.Page(str(HERE / "views" / "bias.py"), title="Bias"),
    st.Page(str(HERE / "views" / "quality.py"), title="Quality"),
    st.Page(str(HERE / "views" / "reports.py"), title="Reports"),
]
st.navigation(pages).run()
