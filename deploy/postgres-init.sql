-- Prefect's own database beside Label Studio's; Prefect needs pg_trgm.
CREATE DATABASE prefect;
\connect prefect
CREATE EXTENSION IF NOT EXISTS pg_trgm;
