"""Jobs: train a tuned lens or evaluate lenses on the server, follow them with a progress bar
(the list refreshes itself every second), cancel them, and read their results."""
import json

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from lensd import patching
from lensd.v1 import training_pb2
from lensd_ui import tables
from lensd_ui.connection import call, session

# Genesis 1 (King James Version), one verse a line: enough for the form's default job.
DEFAULT_TEXTS = "\n".join([
    "In the beginning God created the heaven and the earth.",
    "And the earth was without form, and void; and darkness was upon the face of the deep. And "
    "the Spirit of God moved upon the face of the waters.",
    "And God said, Let there be light: and there was light.",
    "And God saw the light, that it was good: and God divided the light from the darkness.",
    "And God called the light Day, and the darkness he called Night. And the evening and the "
    "morning were the first day.",
    "And God said, Let there be a firmament in the midst of the waters, and let it divide the "
    "waters from the waters.",
    "And God made the firmament, and divided the waters which were under the firmament from the "
    "waters which were above the firmament: and it was so.",
    "And God called the firmament Heaven. And the evening and the morning were the second day.",
    "And God said, Let the waters under the heaven be gathered together unto one place, and let "
    "the dry land appear: and it was so.",
    "And God called the dry land Earth; and the gathering together of the waters called he Seas: "
    "and God saw that it was good.",
    "And God said, Let the earth bring forth grass, the herb yielding seed, and the fruit tree "
    "yielding fruit after his kind, whose seed is in itself, upon the earth: and it was so.",
    "And the earth brought forth grass, and herb yielding seed after his kind, and the tree "
    "yielding fruit, whose seed was in itself, after his kind: and God saw that it was good.",
    "And the evening and the morning were the third day.",
    "And God said, Let there be lights in the firmament of the heaven to divide the day from the "
    "night; and let them be for signs, and for seasons, and for days, and years:",
    "And let them be for lights in the firmament of the heaven to give light upon the earth: and "
    "it was so.",
    "And God made two great lights; the greater light to rule the day, and the lesser light to "
    "rule the night: he made the stars also.",
    "And God set them in the firmament of the heaven to give light upon the earth, and to rule "
    "over the day and over the night, and to divide the light from the darkness: and God saw "
    "that it was good.",
    "And the evening and the morning were the fourth day.",
])
ACTIVE = (training_pb2.JOB_STATE_QUEUED, training_pb2.JOB_STATE_RUNNING)


def state_name(job) -> str:
    return training_pb2.JobState.Name(job.state).removeprefix("JOB_STATE_").lower()


def _texts(raw: str):
    return [line for line in raw.splitlines() if line.strip()]


def _train_form(s) -> None:
    with st.form("train_form"):
        st.subheader("Train a tuned lens")
        name = st.text_input("Lens name", "ui-lens", key="train_name")
        raw = st.text_area("Training texts (one per line)", DEFAULT_TEXTS, key="train_texts")
        path = st.text_input("Or a file under the server's data root", "", key="train_path",
                             help="A .txt, .jsonl or pre-tokenized file; overrides the texts")
        a, b, c = st.columns(3)
        steps = a.number_input("Steps", 1, 1000000, 10, key="train_steps")
        seq_len = b.number_input("Sequence length", 4, 4096, 16, key="train_seq_len")
        tokens = c.number_input("Tokens per step", 4, 1 << 20, 32, key="train_tokens")
        if st.form_submit_button("Submit training job", type="primary", key="train_submit"):
            job = call("SubmitJob", s.client.train_lens, name, path or _texts(raw),
                       model=s.name, num_steps=int(steps), seq_len=int(seq_len),
                       tokens_per_step=int(tokens))
            _select(job.id)


def _select(job_id: str) -> None:
    """Shows a just-submitted job in the job details below."""
    st.session_state["jobs_pick"] = job_id
    st.success(f"Submitted job {job_id}")


def _eval_form(s) -> None:
    with st.form("eval_form"):
        st.subheader("Evaluate lenses")
        lenses = st.multiselect("Lenses", s.lenses(), default=s.lenses(), key="eval_lenses")
        raw = st.text_area("Evaluation texts (one per line)", DEFAULT_TEXTS, key="eval_texts")
        a, b = st.columns(2)
        seq_len = a.number_input("Sequence length", 4, 4096, 16, key="eval_seq_len")
        batch = b.number_input("Batch", 1, 256, 2, key="eval_batch")
        if st.form_submit_button("Submit evaluation job", key="eval_submit"):
            job = call("SubmitJob", s.client.evaluate_lenses, _texts(raw), lenses=lenses,
                       model=s.name, seq_len=int(seq_len), batch=int(batch))
            _select(job.id)


def _table(jobs) -> pd.DataFrame:
    return pd.DataFrame([{
        "id": j.id, "kind": j.kind, "model": j.model, "state": state_name(j),
        "step": f"{j.step}/{j.num_steps}", "loss": j.layer_losses[-1] if j.layer_losses else None,
        "tokens/s": round(j.tokens_per_second, 1), "ETA (s)": round(j.eta_seconds, 1),
        "server": j.server, "reason": j.reason} for j in jobs])


def _result(job) -> None:
    if not job.result_json:
        return
    if job.kind == "patch":
        result = patching.from_job(job)
        for name in result.grids:
            st.plotly_chart(result.heatmap(name), key=f"job_grid_{job.id}_{name}")
        return
    result = json.loads(job.result_json)
    if "aggregate_metrics" in result:
        st.caption(f"{result['tokens']} tokens, {result['units']}")
        for lens, metrics in result["aggregate_metrics"].items():
            st.caption(f"{lens}")
            st.dataframe(pd.DataFrame(metrics).rename_axis("layer").reset_index(),
                         hide_index=True, key=f"job_eval_{job.id}_{lens}")
    elif "final_layer_losses" in result:
        st.caption(f"lens {result['lens']}: {result['steps']} steps, {result['tokens']} tokens in "
                   f"{result['seconds']:.1f} s")
        losses = result["final_layer_losses"]
        figure = go.Figure(go.Bar(x=[str(i) for i in range(len(losses))], y=losses))
        figure.update_layout(title="final loss per layer", xaxis_title="layer",
                             yaxis_title="loss", height=320)
        st.plotly_chart(figure, key=f"job_losses_{job.id}")
    else:
        st.json(result)


@st.fragment(run_every=1.0)
def _jobs() -> None:
    s = session()
    jobs = call("ListJobs", s.client.jobs)
    st.subheader("Your jobs")
    if not jobs:
        st.caption("No jobs yet.")
        return
    tables.show(_table(jobs), "jobs", max_rows=50)
    ids = [j.id for j in jobs]
    if st.session_state.get("jobs_pick") not in ids:
        st.session_state["jobs_pick"] = ids[0]
    chosen = st.selectbox("Job", ids, key="jobs_pick",
                          format_func=lambda i: f"{i} ({state_name(jobs[ids.index(i)])})")
    job = jobs[ids.index(chosen)]
    with st.container(border=True, key="job_detail"):
        st.markdown(f"**{job.kind} job {job.id}** on {job.model}: {state_name(job)}"
                    + (f" ({job.reason})" if job.reason else ""))
        if job.num_steps:
            st.progress(min(job.step / job.num_steps, 1.0),
                        text=f"step {job.step} of {job.num_steps}")
        if job.state in ACTIVE and st.button("Cancel job", key=f"job_cancel_{job.id}"):
            call("CancelJob", s.client.cancel, job.id)
            st.rerun(scope="fragment")
        if job.state == training_pb2.JOB_STATE_SUCCEEDED:
            _result(job)


def render() -> None:
    s = session()
    st.header("Jobs")
    left, right = st.columns(2)
    with left:
        _train_form(s)
    with right:
        _eval_form(s)
    _jobs()
