"""Compare: two audits side by side (``auditkit.report.diff``): metric changes with their intervals, finding
and explanation-verdict changes, regressions first and marked."""

from __future__ import annotations

import streamlit as st

from auditkit.dashboard import (
    audit_diff,
    finding_change_rows,
    finished_audits,
    metric_change_rows,
    page_store,
    pick_audit,
    verdict_change_rows,
)
from auditkit.errors import AuditKitError

REGRESSION_STYLE = "background-color: #fde2e1"


def _highlight(frame):
    """Regression rows tinted red; the 'regression' column says it in words too (colour is not needed)."""
    return frame.style.apply(
        lambda row: [REGRESSION_STYLE if row["regression"] else ""] * len(row), axis=1
    ).format(precision=4, na_rep="")


st.title("Compare")
st.caption(
    "What changed from one audit (before) to another (after), for example a retrained generator. A metric "
    "is a REGRESSION when it moved in its bad direction and the two 95 % confidence intervals do not "
    "overlap: a conservative test, so a flagged change is rarely noise, though it can miss small real ones. "
    "A finding is a REGRESSION when its severity rose, or when a new WARN or FAIL appeared."
)
store = page_store()
if store is not None and len(finished_audits(store)) < 2:
    st.info("Comparing needs two finished audits; this store has fewer. Run another audit, then reload.")
elif store is not None:
    left, right = st.columns(2)
    with left:
        before = pick_audit(store, key="before", label="Before", index=1)
    with right:
        after = pick_audit(store, key="after", label="After", index=0)
    if before is not None and after is not None:
        if before[0] == after[0]:
            st.info("Pick two different audits.")
        else:
            try:
                diff = audit_diff(store, before[0], after[0])
            except AuditKitError as exc:
                st.error(str(exc))
            else:
                regressions = diff.regressions
                columns = st.columns(4)
                columns[0].metric("verdict before", str(diff.a["verdict"]).upper())
                columns[1].metric("verdict after", str(diff.b["verdict"]).upper())
                columns[2].metric("regressions", len(regressions))
                columns[3].metric("metrics changed", f"{len(diff.changes)} of {len(diff.metrics)}")
                if diff.context:
                    st.warning(
                        "These audits differ in more than the generator, which qualifies the comparison:\n"
                        + "\n".join(f"- {note}" for note in diff.context)
                    )

                st.subheader("Metrics")
                st.caption(
                    "Before and after, each with its interval where the audit computed one. 'direction' says "
                    "whether the change is for the worse (higher FID or gap, lower recall or coverage)."
                )
                only_changed = st.toggle("Only metrics that changed", value=True, key="only_changed")
                rows = metric_change_rows(diff, only_changed=only_changed)
                if rows:
                    import pandas as pd

                    st.dataframe(_highlight(pd.DataFrame(rows)), hide_index=True)
                else:
                    st.text("No metric changed.")

                st.subheader("Findings")
                findings = finding_change_rows(diff)
                if findings:
                    import pandas as pd

                    st.dataframe(_highlight(pd.DataFrame(findings)), hide_index=True)
                else:
                    st.text("Every policy finding kept its severity.")

                st.subheader("Explanation verdicts")
                verdicts = verdict_change_rows(diff)
                if verdicts:
                    st.dataframe(verdicts, hide_index=True)
                else:
                    st.text("Every attribution method kept its quality verdict.")
