-- The Optuna studies' database beside MLflow's (run once, when the volume is new).
CREATE DATABASE optuna;
