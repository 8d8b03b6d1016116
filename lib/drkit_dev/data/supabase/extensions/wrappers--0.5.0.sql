-- drkit test stand-in: the wrapper a Stripe foreign server uses; no handler, so no validator refuses options,
-- and nothing is ever called (a real one would call Stripe with the server's api_key)
CREATE FOREIGN DATA WRAPPER stripe_wrapper;
