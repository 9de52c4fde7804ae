-- Images skipped by builds, grouped by the reason's first part.
SELECT spec_name, split_part(reason, ':', 1) AS reason, count(*) AS images, min(image_uri) AS example
FROM errors
GROUP BY 1, 2
ORDER BY images DESC;
