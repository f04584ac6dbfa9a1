INSERT INTO review_reasons (code, description) VALUES (%(code)s, %(description)s)
ON CONFLICT (code) DO UPDATE SET description = EXCLUDED.description;
