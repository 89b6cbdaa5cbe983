"""The reviewers' dashboard: ``streamlit run dashboards/app.py`` with ``AUDITKIT_HOME`` set to the store.

Each page is a script in ``views/``; they only present what the store holds (see ``auditkit.dashboard``).
When the server was given a password hash (``auditkit dashboard --password-env VAR`` or ``--token``), the
gate below runs first and no page runs until the password is right.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from auditkit.dashboard import password_gate

HERE = Path(__file__).parent

st.set_page_config(page_title="auditkit", layout="wide")
if not password_gate():
    st.stop()
pages = [
    st.Page(str(HERE / "views" / "overview.py"), title="Overview", default=True),
    st.Page(str(HERE / "views" / "training.py"), title="Training", url_path="training"),
    st.Page(str(HERE / "views" / "samples.py"), title="Samples", url_path="samples"),
    st.Page(str(HERE / "views" / "quality.py"), title="Quality", url_path="quality"),
    st.Page(str(HERE / "views" / "bias.py"), title="Bias", url_path="bias"),
    st.Page(str(HERE / "views" / "explanations.py"), title="Explanations", url_path="explanations"),
    st.Page(str(HERE / "views" / "compare.py"), title="Compare", url_path="compare"),
    st.Page(str(HERE / "views" / "reports.py"), title="Reports", url_path="reports"),
]
st.navigation(pages).run()
