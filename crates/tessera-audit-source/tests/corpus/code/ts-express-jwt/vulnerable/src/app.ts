import express, { Request } from 'express';
import { expressjwt } from 'express-jwt';

const app = express();
app.use(expressjwt({ secret: 'shhhhhhared-secret' }));
app.get('/orders', (req: Request) => req.auth);
export default app;
