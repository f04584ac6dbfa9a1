-- GradeFlow's own database beside Airflow's metadata database (credentials: see .env.example).
CREATE USER gradeflow WITH PASSWORD 'change-me';
CREATE DATABASE gradeflow OWNER gradeflow;
