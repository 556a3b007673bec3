"""The Streamlit side of the BrainML app: cached loaders, cross-page state, the sidebar and shared views.

Pages import this package and :mod:`brainml`; :mod:`brainml` never imports this package (nor streamlit).
"""
