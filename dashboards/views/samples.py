"""Samples: the generated images an audit kept, by requested class and by what the judge read, paginated."""

from __future__ import annotations

import streamlit as st

from auditkit.dashboard import (
    PAGE_SIZE,
    filter_samples,
    page_store,
    paginate,
    pick_audit,
    sample_gallery,
    table_height,
)
from auditkit.errors import AuditKitError

COLUMNS = 8
ALL = "all"

st.title("Samples")
st.caption(
    "Images the audited generator made, labelled with what the judge (the attribute classifier) read on "
    "each. The audit keeps a few images per judged value as thumbnails; the counts cover every generated "
    "image."
)
store = page_store()
picked = pick_audit(store) if store is not None else None
gallery = None
if picked is not None:
    audit_id, data, _ = picked
    try:
        gallery = sample_gallery(store, audit_id, data)
    except AuditKitError as exc:
        st.error(str(exc))
    else:
        if gallery is None:
            st.info("This audit kept no sample images (its stages/ folder was removed).")

if gallery is not None:
    columns = st.columns(3)
    columns[0].metric("generated images", gallery.n)
    columns[1].metric("thumbnails kept", len(gallery.rows))
    if gallery.checks_condition and gallery.condition_counts:
        matched = sum(gallery.condition_matches.values()) / max(sum(gallery.condition_counts.values()), 1)
        columns[2].metric(f"judge read the requested {gallery.condition}", f"{matched:.1%}")

    st.subheader("Counts over all generated images")
    counts = []
    for attr in gallery.attributes:
        for value, count in gallery.judged_counts[attr].items():
            counts.append(
                {
                    "judged attribute": attr,
                    "value": value,
                    "images": count,
                    "share": count / gallery.n if gallery.n else None,
                    "thumbnails": sum(1 for r in gallery.rows if r[attr] == value),
                }
            )
    st.dataframe(counts, hide_index=True, height=table_height(len(counts)))
    if gallery.conditional:
        st.caption(
            f"The generator is conditional on {gallery.condition}: each image was asked for one class. "
            + (
                "'matching' counts the images whose judged class is the one asked for."
                if gallery.checks_condition
                else f"The judge does not read {gallery.condition}: whether an image matches is unknown."
            )
        )
        by_condition = [
            {
                "requested": name,
                "images": count,
                **(
                    {
                        "matching": gallery.condition_matches.get(name),
                        "match rate": gallery.condition_matches[name] / count if count else None,
                    }
                    if name in gallery.condition_matches
                    else {}
                ),
            }
            for name, count in gallery.condition_counts.items()
        ]
        st.dataframe(by_condition, hide_index=True)

    st.subheader("Gallery")
    # only the filters this audit supports, each as wide as its content needs
    widths = ([3] if gallery.conditional else []) + [2, 3] + ([2] if gallery.checks_condition else [])
    filters = list(st.columns(widths))
    chosen_conditions = None
    if gallery.conditional:
        chosen_conditions = filters.pop(0).multiselect(
            f"Requested {gallery.condition}",
            gallery.class_names,
            default=gallery.class_names,
            key="conditions",
        )
    attribute = filters.pop(0).selectbox("Judged attribute", gallery.attributes, key="attribute")
    # one widget per attribute: its options differ, and each keeps its own choice
    chosen_values = filters.pop(0).multiselect(
        f"Judged {attribute}",
        gallery.values[attribute],
        default=gallery.values[attribute],
        key=f"values_{attribute}",
    )
    matches = None
    if gallery.checks_condition:
        answer = filters.pop(0).selectbox(
            "Judged as requested",
            [ALL, "yes", "no"],
            key="matches",
            help="Whether the judge read the class the generator was asked for.",
        )
        matches = None if answer == ALL else answer == "yes"
    group_options = ([gallery.condition] if gallery.conditional else []) + list(gallery.attributes)
    group_by = st.selectbox(
        "Group by",
        group_options,
        format_func=lambda g: (
            f"requested {g}" if g == gallery.condition and gallery.conditional else f"judged {g}"
        ),
        key="group_by",
    )
    group_key = "condition" if gallery.conditional and group_by == gallery.condition else group_by
    shown = filter_samples(
        gallery.rows, conditions=chosen_conditions, attribute=attribute, values=chosen_values, matches=matches
    )
    order = {
        v: i
        for i, v in enumerate(gallery.class_names if group_key == "condition" else gallery.values[group_by])
    }
    shown = sorted(shown, key=lambda r: (order.get(r[group_key], len(order)), r["sample"]))
    pages = max(1, -(-len(shown) // PAGE_SIZE))
    page = st.number_input("Page", min_value=1, max_value=pages, value=1, step=1, key="page")
    on_page, pages = paginate(shown, page)
    start = (min(page, pages) - 1) * PAGE_SIZE
    st.caption(
        f"Showing {start + 1 if on_page else 0}–{start + len(on_page)} of {len(shown)} thumbnails "
        f"(page {min(page, pages)} of {pages}, {PAGE_SIZE} per page). Each caption: sample number, then "
        "what the judge read"
        + (", then the class asked for (✗ when the judge read another)." if gallery.conditional else ".")
    )
    if not on_page:
        st.text("No thumbnails match these filters.")
    group = object()
    grid = []
    for row in on_page:
        if row[group_key] != group:
            group = row[group_key]
            label = f"requested {group_by}" if group_key == "condition" else f"judged {group_by}"
            st.markdown(f"**{label}: {group}**")
            grid = st.columns(COLUMNS)
            slot = 0
        judged = ", ".join(str(row[a]) for a in gallery.attributes)
        caption = f"#{row['sample']}: {judged}"
        if gallery.conditional:
            caption += f"; asked {row['condition']}" + (" ✗" if row["matches"] is False else "")
        if slot == COLUMNS:
            grid, slot = st.columns(COLUMNS), 0
        grid[slot].image(gallery.thumbnails[row["sample"]], caption=caption, width=96)
        slot += 1
