"""Settings (admins): providers and models, prices, budgets with their burn, the assistant's tool policies."""

import streamlit as st

from lib.gateway.cost_control import SCOPES
from lib.gateway.providers import (
    breaker_caption,
    budget_bars,
    check_provider,
    feature_defaults,
    override_history,
    price_rows,
    prices_caption,
    provider_rows,
    remove_budget,
    save_budget,
    save_price,
)
from lib.ui.assistant_view import show_policy_editor
from lib.ui.resources import current_user, get_engine, get_gateway, get_settings, require_page
from lib.ui.untrusted import untrusted_label

require_page("pages/admin.py")
settings = get_settings()
engine, gateway = get_engine(settings), get_gateway(settings)
st.title("Settings")
providers, prices, budgets, tools = st.tabs(["Providers and models", "Prices", "Budgets", "Assistant tools"])

with providers:
    st.caption("Providers come from the environment or .streamlit/secrets.toml; keys are never shown.")
    st.dataframe(provider_rows(settings), hide_index=True, use_container_width=True)
    if st.button("Check which providers answer", icon=":material/network_check:"):
        st.dataframe([check_provider(p) for p in settings.providers], hide_index=True, use_container_width=True)
    st.subheader("Per feature")
    st.dataframe(feature_defaults(settings), hide_index=True, use_container_width=True)
    st.caption(breaker_caption(settings, gateway.breaker))

with prices:
    st.caption(prices_caption(settings, gateway.price_table))
    st.dataframe(price_rows(settings, gateway.price_table, engine), hide_index=True, use_container_width=True)
    with st.form("price"):
        c1, c2, c3, c4 = st.columns(4)
        model = c1.text_input("Model (provider/model)")
        inp = c2.number_input("Input $/1M", min_value=0.0, step=0.01, format="%.4f")
        cached = c3.number_input("Cached input $/1M", min_value=0.0, step=0.01, format="%.4f")
        out = c4.number_input("Output $/1M", min_value=0.0, step=0.01, format="%.4f")
        if st.form_submit_button("Save price override") and model.strip():
            save_price(gateway, model, inp, out, cached, current_user())
            st.success(f"Price for {untrusted_label(model)} saved; it applies from now on.")
    history = override_history(engine)
    if history:
        st.dataframe(history, hide_index=True, use_container_width=True)

with budgets:
    for bar in budget_bars(engine):
        st.progress(bar["fraction"], text=untrusted_label(bar["text"]))
        if st.button("Delete", key=f"del-budget-{bar['id']}"):
            remove_budget(gateway, bar["id"])
            st.rerun()
    with st.form("budget"):
        c1, c2, c3 = st.columns(3)
        scope = c1.selectbox("Scope", SCOPES)
        subject = c2.text_input("User or feature (empty for global)")
        degrade = c3.selectbox(
            "Past the soft limit, use",
            [None, *gateway.model_names()],
            format_func=lambda m: "the same model (warn only)" if m is None else m,
        )
        c4, c5, c6 = st.columns(3)
        usd = c4.number_input("Monthly limit $ (0 = none)", min_value=0.0, step=1.0)
        tokens = c5.number_input("Monthly limit tokens (0 = none)", min_value=0, step=10000)
        soft = c6.slider("Soft limit", 0.1, 1.0, 0.8)
        if st.form_submit_button("Save budget"):
            try:
                save_budget(gateway, scope, subject, usd, int(tokens), soft, degrade, current_user())
                st.rerun()
            except ValueError as exc:
                st.error(untrusted_label(str(exc)))

with tools:
    show_policy_editor(engine, current_user())
