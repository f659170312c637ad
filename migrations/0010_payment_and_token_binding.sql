-- A mailed token is bound to the address it was mailed to: it works only while the user
-- still has that address. Tokens issued before this migration are bound to the address
-- their user has now.
ALTER TABLE one_time_tokens ADD COLUMN email TEXT;
UPDATE one_time_tokens SET email = (SELECT email FROM users WHERE users.id = one_time_tokens.user_id);

-- A credit purchase is recorded when its Checkout Session completes, but its credits come
-- only with the payment: 'pending' until a delayed payment method succeeds ('paid') or
-- fails ('failed'). Purchases recorded before this migration were all paid.
ALTER TABLE credit_purchases ADD COLUMN status TEXT NOT NULL DEFAULT 'paid'
    CHECK (status IN ('pending', 'paid', 'failed'));
