-- The least certain rows of one family: forge query queries/low_margin.sql --param family=depth_order --param max_margin=0.3
SELECT qa_id, image_uri, question, answer, round(margin, 4) AS margin
FROM qa
WHERE family = $family AND margin < $max_margin
ORDER BY margin, qa_id
LIMIT 100;
