import express, { Request } from 'express';
import { expressjwt } from 'express-jwt';

const app = express();
app.use(expressjwt({ secret: process.env.JWT_SECRET as string, algorithms: ['HS256'] }));
app.get('/orders', (req: Request) => req.auth);
export default app;
