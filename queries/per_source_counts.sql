-- Rows and images per perception source (synthetic, annotations, or model ids) and depth kind.
SELECT perception, depth_kind, count(*) AS rows, count(DISTINCT image_id) AS images
FROM qa
GROUP BY perception, depth_kind
ORDER BY rows DESC, perception;
