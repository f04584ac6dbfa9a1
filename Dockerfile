# GradeFlow's Airflow image: the official Apache Airflow image plus GradeFlow's runtime requirements
# (requirements.txt only: no test, lint or embedded-stack tools) and its code under /opt/gradeflow.
# The tag's Airflow and Python versions must match requirements.txt (a test checks it).
FROM apache/airflow:3.3.2-python3.11

COPY --chown=airflow:root requirements.txt /opt/gradeflow/requirements.txt
RUN pip install --no-cache-dir -r /opt/gradeflow/requirements.txt

COPY --chown=airflow:root dags /opt/gradeflow/dags
COPY --chown=airflow:root plugins /opt/gradeflow/plugins
COPY --chown=airflow:root include /opt/gradeflow/include
COPY --chown=airflow:root expectations /opt/gradeflow/expectations

ENV AIRFLOW__CORE__DAGS_FOLDER=/opt/gradeflow/dags \
    AIRFLOW__CORE__PLUGINS_FOLDER=/opt/gradeflow/plugins \
    AIRFLOW__CORE__LOAD_EXAMPLES=False \
    PYTHONPATH=/opt/gradeflow/plugins
