-- Whether the migrate step registered the institution (the worker cannot: institutions is the owner's).
SELECT count(*) AS registered
  FROM institutions
 WHERE institution_id = %(inst)s;
