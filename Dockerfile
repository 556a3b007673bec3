# Hugging Face Spaces (Docker SDK) and any container host: the app on port 8501, CPU only.
FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=2
RUN useradd --create-home --uid 1000 app
WORKDIR /home/app/brainml
COPY --chown=app requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY --chown=app . .
USER app
EXPOSE 8501
CMD ["streamlit", "run", "streamlit_app.py", "--server.port=8501", "--server.address=0.0.0.0"]
