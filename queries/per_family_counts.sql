-- QA rows per family and spec.
SELECT spec_name, family, count(*) AS rows, count(DISTINCT image_id) AS images
FROM qa
GROUP BY spec_name, family
ORDER BY spec_name, family;
