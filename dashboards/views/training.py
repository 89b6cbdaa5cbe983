"""Training: one training run's loss curves, throughput, sample grids over time and configuration."""

from __future__ import annotations

import streamlit as st

from auditkit.dashboard import (
    config_rows,
    metrics_log,
    page_store,
    sample_grids,
    table_height,
    training_runs,
    training_summary,
)

# what the trainers of auditkit.training log besides losses and img/s
MEANING = {
    "d_real": "the discriminator's mean score on real images",
    "d_fake": "its mean score on generated ones (a widening gap means the discriminator is winning)",
    "recon": "the VAE's reconstruction error per pixel",
    "kl": "the VAE's KL divergence of the latent code from the prior",
}

st.title("Training")
st.caption(
    "How a generator was trained: the losses it logged, how fast it ran, and what it drew as it learned."
)
store = page_store()
runs = training_runs(store) if store is not None else []
if store is not None and not runs:
    st.info("No training runs in this store: train one with `auditkit train CONFIG`, then reload this page.")
if runs:
    labels = {r["id"]: f"{r['id']}  {r['name']}  ({r['status']})" for r in runs}
    run_id = st.selectbox("Training run", list(labels), format_func=labels.__getitem__, key="run")
    run = store.get_run(run_id)
    log = metrics_log(store, run_id)
    summary = training_summary(store, run_id)

    last = log.rows[-1] if log.rows else {}
    speeds = sorted(r["img_per_s"] for r in log.rows if "img_per_s" in r)
    columns = st.columns(4)
    columns[0].metric("status", run.status)
    columns[1].metric("steps logged", last.get("step", 0))
    columns[2].metric("median images/s", f"{speeds[len(speeds) // 2]:.0f}" if speeds else "n/a")
    columns[3].metric("device", (summary or {}).get("device", "n/a"))
    if log.bad_lines:
        st.warning(
            f"Skipped {len(log.bad_lines)} unreadable line(s) of metrics.jsonl (line "
            f"{', '.join(map(str, log.bad_lines[:5]))}): a write was cut short."
        )

    st.subheader("Losses")
    if not log.rows:
        st.text("This run has logged no steps yet.")
    else:
        st.caption(
            "One point per logged step. For a GAN, loss_d is the discriminator's loss and loss_g the "
            "generator's; they fight each other, so flat or slowly oscillating curves are normal and a curve "
            "that runs away (or a discriminator loss near zero) signals a collapse."
        )
        st.line_chart(log.rows, x="step", y=log.losses or None, x_label="step", y_label="loss")
        if log.others:
            st.caption(
                "Other logged values: "
                + "; ".join(f"{name}: {MEANING.get(name, 'as the trainer logged it')}" for name in log.others)
                + "."
            )
            st.line_chart(log.rows, x="step", y=log.others, x_label="step")
        if speeds:
            st.subheader("Throughput")
            st.caption("Training images processed per second over each logging window.")
            st.line_chart(log.rows, x="step", y="img_per_s", x_label="step", y_label="images/s")

    st.subheader("Samples over time")
    grids = sample_grids(store, run_id)
    if not grids:
        st.text("No sample grids yet: the trainer writes one every `sample_every` steps.")
    else:
        st.caption(
            "The same latents and classes drawn at each saved step (one row per class for a conditional "
            "generator), so changes between grids come from training alone."
        )
        names = [label for label, _ in grids]
        chosen = (
            st.select_slider("Step", names, value=names[-1], key="grid_step") if len(names) > 1 else names[0]
        )
        st.image(str(dict(grids)[chosen]), caption=f"{run_id}, {chosen}", width=480)

    st.subheader("Configuration")
    st.caption("The settings the run was started with (nested settings as dotted names).")
    config = config_rows(run.config)
    st.dataframe(config, hide_index=True, width="content", height=table_height(len(config)))
