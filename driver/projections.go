package driver

// Projections stores read models, checkpoints and parked events.
type Projections interface{}
