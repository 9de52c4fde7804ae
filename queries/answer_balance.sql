-- Share of each answer within its family (top answers first).
SELECT family, answer, count(*) AS rows,
       round(count(*) / sum(count(*)) OVER (PARTITION BY family), 4) AS share
FROM qa
GROUP BY family, answer
ORDER BY family, rows DESC, answer;
